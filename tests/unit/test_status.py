"""Unit tests for apptask.status: phases, metav1-style conditions, idempotent status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ssa_controller.apptask import status
from ssa_controller.apptask.status import Sync

T1 = "2026-01-01T00:00:00Z"
T2 = "2026-01-01T00:05:00Z"
CONDITION_KEYS = {"type", "status", "reason", "message", "observedGeneration",
                  "lastTransitionTime"}


UID = "a-1"
OWNED_BY_THE_APPTASK = [{"apiVersion": "example.com/v1", "kind": "AppTask", "name": "web",
                         "uid": UID, "controller": True}]


def apptask(generation: int = 2, current: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "web", "namespace": "demo", "uid": UID,
                                        "generation": generation}, "spec": {"image": "nginx"}}
    if current is not None:
        obj["status"] = current
    return obj


def deployment(replicas: int = 2, ready: int = 2, updated: int = 2, available: int = 2,
               total: int | None = None, observed: int = 1,
               conditions: list[dict[str, Any]] | None = None,
               owners: list[dict[str, Any]] = OWNED_BY_THE_APPTASK) -> dict[str, Any]:
    """A Deployment the AppTask controls, unless `owners` says otherwise."""
    return {"metadata": {"name": "web", "namespace": "demo", "generation": 1,
                         "ownerReferences": owners},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed,
                       "replicas": updated if total is None else total,
                       "updatedReplicas": updated, "readyReplicas": ready,
                       "availableReplicas": available, "conditions": conditions or []}}


SYNCED = Sync.synced("web")
PROGRESS_DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": 'ReplicaSet "web-1" has timed out progressing.'}
REPLICA_FAILURE = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                   "message": 'pods "web-1-x" is forbidden: exceeded quota'}


def conditions(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


# --------------------------------------------------------------------------- phases


def test_pending_without_a_deployment() -> None:
    st = status.compute(apptask(), None, SYNCED, T1)
    assert st["phase"] == "Pending"
    assert json.loads(json.dumps(st))["phase"] == "Pending"  # an enum, written as its value
    assert st["readyReplicas"] == 0
    assert "deploymentName" not in st
    assert conditions(st)["Ready"]["status"] == "False"


@pytest.mark.parametrize("dep", [
    deployment(ready=1, available=1),
    deployment(updated=1, total=3),
    deployment(observed=0),
], ids=["not-all-available", "rollout-in-progress", "not-observed-yet"])
def test_progressing_until_observed_updated_and_available(dep: dict[str, Any]) -> None:
    st = status.compute(apptask(), dep, SYNCED, T1)
    assert st["phase"] == "Progressing"
    assert conditions(st)["Ready"]["status"] == "False"


@pytest.mark.parametrize("dep", [
    deployment(observed=0),
    deployment(observed=0, ready=0, available=0, conditions=[PROGRESS_DEADLINE]),
], ids=["ready-before", "failed-before"])
def test_a_generation_not_observed_yet_is_progressing_whatever_was_said_of_the_one_before(
        dep: dict[str, Any]) -> None:
    """The status says the generation was acted on; Ready says the Deployment controller has
    not looked at it yet, not what it said of the spec before (as kubectl rollout status)."""
    st = status.compute(apptask(), dep, SYNCED, T1)
    ready = conditions(st)["Ready"]
    assert (st["observedGeneration"], st["phase"], ready["status"], ready["reason"]) == (
        2, "Progressing", "False", "DeploymentProgressing")
    assert ready["message"] == ("waiting for the Deployment controller to observe generation 1 "
                                "(observed: 0)")


def test_ready_when_observed_updated_and_available() -> None:
    st = status.compute(apptask(), deployment(), SYNCED, T1)
    assert st["phase"] == "Ready"
    assert st["readyReplicas"] == 2
    assert st["deploymentName"] == "web"
    assert conditions(st)["Ready"]["status"] == "True"


def test_a_deployment_scaled_to_zero_is_ready() -> None:
    dep = deployment(replicas=0, ready=0, updated=0, available=0)
    assert status.compute(apptask(), dep, SYNCED, T1)["phase"] == "Ready"


@pytest.mark.parametrize("cond", [PROGRESS_DEADLINE, REPLICA_FAILURE],
                         ids=["progress-deadline-exceeded", "replica-failure"])
def test_degraded_when_the_deployment_reports_failure(cond: dict[str, Any]) -> None:
    st = status.compute(apptask(), deployment(ready=0, available=0, conditions=[cond]), SYNCED, T1)
    assert st["phase"] == "Degraded"
    assert conditions(st)["Ready"] == {
        "type": "Ready", "status": "False", "reason": cond["reason"], "message": cond["message"],
        "observedGeneration": 2, "lastTransitionTime": T1}


@pytest.mark.parametrize("sync", [Sync.invalid("spec.image: is required"),
                                  Sync.rejected("Deployment.apps is invalid: duplicate port")])
def test_invalid_when_the_spec_cannot_be_applied(sync: Sync) -> None:
    st = status.compute(apptask(), deployment(), sync, T1)
    assert st["phase"] == "Invalid"
    synced = conditions(st)["Synced"]
    assert (synced["status"], synced["reason"], synced["message"]) == (
        "False", sync.reason, sync.message)


def test_conflict_from_the_sync_names_the_reason_in_the_conflict_condition() -> None:
    sync = Sync.conflicted("FieldConflict", 'conflict with "kubectl": .spec.replicas')
    st = status.compute(apptask(), deployment(), sync, T1)
    assert st["phase"] == "Conflict"
    conflict = conditions(st)["Conflict"]
    assert (conflict["status"], conflict["reason"], conflict["message"]) == (
        "True", "FieldConflict", 'conflict with "kubectl": .spec.replicas')


def test_no_conflict_condition_is_false_when_synced() -> None:
    assert conditions(status.compute(apptask(), deployment(), SYNCED, T1))["Conflict"]["status"] \
        == "False"


@pytest.mark.parametrize("owners", [
    [],
    [{**OWNED_BY_THE_APPTASK[0], "uid": "an-earlier-apptask"}],
    [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web", "uid": UID,
      "controller": True}],
    [{**OWNED_BY_THE_APPTASK[0], "controller": False}],
], ids=["unowned", "an-earlier-apptask", "another-kind", "not-as-controller"])
def test_someone_elses_deployment_is_no_readiness_of_the_apptask(
        owners: list[dict[str, Any]]) -> None:
    sync = Sync.conflicted("DeploymentExists", "Deployment web exists")
    st = status.compute(apptask(), deployment(owners=owners), sync, T1)
    assert (st["phase"], st["readyReplicas"]) == ("Conflict", 0)
    assert "deploymentName" not in st
    ready = conditions(st)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "DeploymentNotControlled", "Deployment web is not controlled by this AppTask")


@pytest.mark.parametrize(("in_sync", "synced"), [(True, "True"), (False, "False")])
def test_a_paused_apptask_is_paused_and_synced_says_whether_the_deployment_matches(
        in_sync: bool, synced: str) -> None:
    st = status.compute(apptask(), deployment(), Sync.paused(in_sync), T1)
    assert st["phase"] == "Paused"
    assert (conditions(st)["Synced"]["status"], conditions(st)["Synced"]["reason"]) == (
        synced, "Paused")
    assert ("does not match the spec" in conditions(st)["Synced"]["message"]) is not in_sync
    assert conditions(st)["Ready"]["status"] == "True"  # the Deployment's own readiness
    assert conditions(st)["Conflict"]["status"] == "False"


def test_a_failed_apply_is_degraded() -> None:
    st = status.compute(apptask(), None, Sync.failed("etcdserver: request timed out"), T1)
    assert st["phase"] == "Degraded"
    assert conditions(st)["Synced"]["status"] == "False"


# --------------------------------------------------------------------------- conditions


def test_conditions_are_shaped_like_metav1_conditions_and_keyed_by_type() -> None:
    st = status.compute(apptask(generation=7), deployment(), SYNCED, T1)
    types = [c["type"] for c in st["conditions"]]
    assert sorted(types) == ["Conflict", "Ready", "Synced"]
    for cond in st["conditions"]:
        assert set(cond) == CONDITION_KEYS
        assert cond["status"] in ("True", "False")
        assert cond["reason"] and isinstance(cond["message"], str)
        assert cond["observedGeneration"] == 7
        assert cond["lastTransitionTime"] == T1
    assert st["observedGeneration"] == 7


def test_last_transition_time_is_kept_while_the_status_is_unchanged() -> None:
    first = status.compute(apptask(), deployment(ready=0, available=0), SYNCED, T1)
    second = status.compute(apptask(current=first), deployment(ready=1, available=1), SYNCED, T2)
    assert conditions(second)["Ready"]["message"] != conditions(first)["Ready"]["message"]
    assert {c["lastTransitionTime"] for c in second["conditions"]} == {T1}


def test_last_transition_time_moves_only_for_a_condition_whose_status_changed() -> None:
    first = status.compute(apptask(), deployment(ready=0, available=0), SYNCED, T1)
    second = status.compute(apptask(current=first), deployment(), SYNCED, T2)
    assert {t: c["lastTransitionTime"] for t, c in conditions(second).items()} == {
        "Ready": T2, "Synced": T1, "Conflict": T1}


# ------------------------------------------------------------------- idempotence and patches


def test_equal_inputs_give_an_equal_status() -> None:
    assert status.compute(apptask(), deployment(), SYNCED, T1) == \
        status.compute(apptask(), deployment(), SYNCED, T1)


@pytest.mark.parametrize("dep", [None, deployment(), deployment(ready=0, available=0),
                                 deployment(conditions=[PROGRESS_DEADLINE])])
def test_recomputing_from_the_written_status_needs_no_patch(dep: dict[str, Any] | None) -> None:
    written = status.compute(apptask(), dep, SYNCED, T1)
    again = status.compute(apptask(current=written), dep, SYNCED, T2)
    assert again == written
    assert status.patch_for(written, again) is None


def test_a_new_generation_needs_a_patch() -> None:
    written = status.compute(apptask(generation=2), deployment(), SYNCED, T1)
    again = status.compute(apptask(generation=3, current=written), deployment(), SYNCED, T2)
    assert status.patch_for(written, again) == {"status": again}


def test_patch_for_sets_keys_that_are_gone_to_null() -> None:
    current = status.compute(apptask(), deployment(), SYNCED, T1)
    wanted = status.compute(apptask(current=current), None, SYNCED, T2)
    patch = status.patch_for(current, wanted)
    assert patch == {"status": {**wanted, "deploymentName": None}}


def test_patch_for_a_status_never_written_is_the_whole_status() -> None:
    wanted = status.compute(apptask(), None, SYNCED, T1)
    assert status.patch_for(None, wanted) == {"status": wanted}



# --------------------------------------------------------------------------- coalescing

def test_a_moving_ready_count_is_progress_only() -> None:
    before = status.compute(apptask(), deployment(replicas=10, ready=3, updated=5), SYNCED, T1)
    after = status.compute(apptask(current=before), deployment(replicas=10, ready=6, updated=8),
                           SYNCED, T1)
    assert after != before and status.progress_only(before, after)


@pytest.mark.parametrize("after", [
    status.compute(apptask(), deployment(replicas=10, ready=10, updated=10, available=10),
                   SYNCED, T1),
    status.compute(apptask(generation=3), deployment(replicas=10, ready=6), SYNCED, T1),
    status.compute(apptask(), deployment(replicas=10, ready=6, updated=8),
                   Sync.failed("boom"), T1),
])
def test_a_new_phase_generation_or_condition_is_not_progress_only(after: dict[str, Any]) -> None:
    before = status.compute(apptask(), deployment(replicas=10, ready=3, updated=5), SYNCED, T1)
    assert not status.progress_only(before, after)
    assert not status.progress_only(None, after)


def test_condition_messages_are_cut_to_what_the_api_accepts() -> None:
    """metav1.Condition's message holds at most 32768 bytes (the CRD's maxLength): a longer
    one, such as a 422 listing every invalid field, would make the status patch fail for ever."""
    huge = "é" * 40000  # two bytes each
    st = status.compute(apptask(), None, Sync.rejected(huge), T1)
    for cond in (conditions(st)["Synced"], conditions(st)["Conflict"]):
        assert len(cond["message"].encode()) <= status.MESSAGE_LIMIT == 32768
    assert conditions(st)["Synced"]["message"] == "é" * 16384
    st = status.compute(apptask(), None, Sync.conflicted("ApplyConflict", "x" * 40000), T1)
    assert conditions(st)["Conflict"]["message"] == "x" * 32768


def test_a_sync_holds_no_dict() -> None:
    """Each AppTask's memory keeps the Sync its status was last found current for: at 20,000
    AppTasks a __dict__ each (296 bytes) would be 6 MB."""
    assert not hasattr(Sync.synced("web"), "__dict__")
