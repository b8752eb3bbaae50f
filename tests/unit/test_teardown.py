"""Unit tests for what the reconciler does when objects go away under it (issue 9, items 2 and
5): a namespace being torn down, a Deployment that vanished while its AppTask is still cached,
a Deployment being deleted. The reconcile runs with the Harness of test_reconciler.py (real
caches, fake clock, a recording stand-in for the API client)."""

from __future__ import annotations

import pytest
from test_reconciler import Harness, apptask, deployment

from ssa_controller.client.wire import ApiError, namespace_closed
from ssa_controller.reconciler import VANISHED_GRACE
from ssa_controller.runtime.objectkey import ObjectKey

TERMINATING_BODY = {
    "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
    "message": 'deployments.apps "web" is forbidden: unable to create new content in namespace '
               "demo because it is being terminated",
    "details": {"name": "web", "group": "apps", "kind": "deployments",
                "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                            "message": "namespace demo is being terminated"}]},
}
"""What kube-apiserver v1.20.2 answers to an apply in a terminating namespace (recorded)."""
TERMINATING = ApiError(403, "Forbidden", TERMINATING_BODY["message"], TERMINATING_BODY)
NAMESPACE_GONE = ApiError(404, "NotFound", 'namespaces "demo" not found',
                          {"code": 404, "reason": "NotFound",
                           "details": {"name": "demo", "kind": "namespaces"}})


@pytest.mark.parametrize("error, closed", [
    (TERMINATING, True),
    (ApiError(403, "Forbidden", TERMINATING_BODY["message"]), True),  # no body: the message
    (NAMESPACE_GONE, True),
    (ApiError(404, "NotFound", 'deployments.apps "web" not found',
              {"details": {"name": "web", "group": "apps", "kind": "deployments"}}), False),
    (ApiError(403, "Forbidden", 'deployments.apps "web" is forbidden: exceeded quota'), False),
    (ApiError(403, "Forbidden", 'User "controller" cannot patch resource "deployments"'), False),
    (ApiError(409, "Conflict", "Apply failed with 1 conflict"), False),
    (ApiError(0, "ConnectionError", "refused"), False),
])
def test_which_refusals_mean_the_namespace_is_closed(error: ApiError, closed: bool) -> None:
    assert namespace_closed(error) is closed


def writes(harness: Harness) -> list[str]:
    """The kinds of requests the last reconcile sent, reads left out; a create-only apply
    counts as an apply."""
    return ["apply" if kind == "create" else kind for kind in harness.kube.kinds()
            if kind != "get"]


def converged(harness: Harness) -> dict:
    """The AppTask as the controller left it: converged, its status naming the Deployment."""
    task = apptask()
    task["status"] = {"phase": "Ready", "deploymentName": "web", "observedGeneration": 1}
    harness.given(task)
    return task


def test_a_terminating_namespace_costs_one_attempt_then_nothing() -> None:
    harness = Harness()
    task = apptask()
    harness.given(task)
    other = apptask()
    other["metadata"].update(name="api", uid="a2")
    harness.watched(other)
    harness.kube.failures["apply"] = TERMINATING

    result = harness.reconcile()
    assert writes(harness) == ["apply"]  # no status write, no retry
    assert result.outcome == "skipped" and result.error is None and not result.requeue_after
    assert harness.events.reasons == []
    assert harness.reconciler.memories.of(ObjectKey("demo", "api"), other).closing

    assert harness.reconcile(after=60.0).outcome == "skipped"  # a resync, an event
    assert harness.kube.kinds() == []
    harness.deleted(task)  # their DELETED events
    harness.deleted(other)
    assert len(harness.reconciler.memories) == 0


def test_an_apptask_of_a_recreated_namespace_is_reconciled() -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures["apply"] = TERMINATING
    harness.reconcile()
    del harness.kube.failures["apply"]
    task = apptask()
    task["metadata"]["uid"] = "a-new"  # created after the old namespace was gone
    harness.given(task)
    result = harness.reconcile()
    assert writes(harness) == ["apply", "status"]
    assert result.outcome == "applied"


def test_a_vanished_deployment_waits_a_grace_for_its_apptasks_deletion() -> None:
    harness = Harness()
    converged(harness)
    result = harness.reconcile()
    assert harness.kube.kinds() == [] and result.requeue_after == VANISHED_GRACE
    harness.deleted(apptask())  # the AppTask's DELETED event comes meanwhile
    assert harness.reconcile(after=VANISHED_GRACE).outcome == "skipped"
    assert harness.kube.kinds() == []


def test_a_deployment_deleted_by_hand_is_recreated_after_the_grace() -> None:
    harness = Harness()
    converged(harness)
    harness.reconcile()
    assert harness.reconcile(after=VANISHED_GRACE / 2).requeue_after == pytest.approx(
        VANISHED_GRACE / 2)
    assert harness.kube.kinds() == []
    result = harness.reconcile(after=VANISHED_GRACE / 2)
    assert writes(harness)[:1] == ["apply"] and result.outcome == "applied"
    # The next disappearance waits the grace again.
    harness.deployment_cache.delete(deployment(apptask()))
    assert harness.reconcile(after=60.0).requeue_after == VANISHED_GRACE


def test_a_new_apptask_creates_its_deployment_at_once() -> None:
    harness = Harness()
    harness.given(apptask())
    assert harness.reconcile().outcome == "applied"


def test_a_deployment_being_deleted_is_left_alone() -> None:
    harness = Harness()
    task = apptask(replicas=3)  # differs from the live Deployment: would be applied
    live = deployment(apptask(replicas=1))
    live["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    harness.given(task, live)
    assert harness.reconcile().outcome == "skipped"
    assert harness.kube.kinds() == []
