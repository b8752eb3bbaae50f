"""Unit tests for ssa_controller.apptask.predicates: which watch events are worth a reconcile."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from ssa_controller.apptask import predicates
from ssa_controller.runtime import fieldset
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.runtime.store import Cached

Obj = dict[str, Any]
OWNER_REF = {"apiVersion": "example.com/v1", "kind": "AppTask", "name": "web",
             "uid": "0b9c3f0e-7d1a-4c55-9d6e-2f1b8a0c4d21", "controller": True}
REPLICAS = ("f:spec", "f:replicas")
IMAGE = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}', "f:image")


def apptask() -> Obj:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": "web", "namespace": "demo", "uid": OWNER_REF["uid"],
                         "generation": 1, "resourceVersion": "100"},
            "spec": {"image": "nginx:1.25"}}


def managed(manager: str, operation: str, paths: list[fieldset.Path], time: str) -> Obj:
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1", "time": time,
            "fieldsType": "FieldsV1", "fieldsV1": fieldset.to_fields(paths)}


def raw_deployment() -> Obj:
    """A Deployment as the API server sends it, managedFields included."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "demo", "uid": "d-1", "generation": 1,
            "resourceVersion": "200",
            "labels": {"app.kubernetes.io/managed-by": "ssa-controller"},
            "ownerReferences": [OWNER_REF],
            "managedFields": [managed("ssa-controller", "Apply", [REPLICAS, IMAGE],
                                      "2026-01-01T00:00:00Z")],
        },
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                   "readyReplicas": 1, "availableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "False",
                                   "reason": "MinimumReplicasUnavailable",
                                   "lastUpdateTime": "2026-01-01T00:00:00Z"}]},
    }


def changed(obj: Obj, edit: Callable[[Obj], None]) -> Obj:
    new = copy.deepcopy(obj)
    edit(new)
    return new


def cached(obj: Obj) -> Cached:
    """The Deployment as the cache holds it (without managedFields, its owners beside it)."""
    return Cached.of(obj, with_owners=True)


def task(obj: Obj) -> Cached:
    """The AppTask as the cache holds it."""
    return Cached.of(obj, with_owners=False)


# --------------------------------------------------------------------------- apptask_changed


def test_a_new_or_deleted_apptask_is_worth_a_reconcile() -> None:
    assert predicates.apptask_changed(None, task(apptask()))
    assert predicates.apptask_changed(task(apptask()), None)


@pytest.mark.parametrize("edit", [
    lambda o: o["metadata"].update(generation=2),
    lambda o: o["metadata"].update(uid="another-uid"),
    lambda o: o["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"),
], ids=["generation", "re-created", "being-deleted"])
def test_a_spec_change_recreation_or_deletion_is_worth_a_reconcile(
        edit: Callable[[Obj], None]) -> None:
    assert predicates.apptask_changed(task(apptask()), task(changed(apptask(), edit)))


@pytest.mark.parametrize("edit", [
    lambda o: o["metadata"].update(resourceVersion="101"),
    lambda o: o.update(status={"phase": "Ready", "observedGeneration": 1}),
    lambda o: o["metadata"].update(annotations={"note": "x"}, resourceVersion="102"),
], ids=["resource-version", "status", "metadata-only"])
def test_other_apptask_changes_are_not_worth_a_reconcile(edit: Callable[[Obj], None]) -> None:
    assert not predicates.apptask_changed(task(apptask()), task(changed(apptask(), edit)))


# --------------------------------------------------------------------------- deployment_changed


def test_a_deployment_that_appears_or_goes_away_is_worth_a_reconcile() -> None:
    assert predicates.deployment_changed(None, cached(raw_deployment()))
    assert predicates.deployment_changed(cached(raw_deployment()), None)


def _take_replicas(o: Obj) -> None:
    o["metadata"]["managedFields"] = [
        managed("ssa-controller", "Apply", [IMAGE], "2026-01-01T00:00:00Z"),
        managed("kubectl", "Update", [REPLICAS], "2026-01-01T00:01:00Z")]


@pytest.mark.parametrize("edit", [
    lambda o: o["status"].update(readyReplicas=2, availableReplicas=2),
    lambda o: o["status"]["conditions"][0].update(status="True", reason="MinimumReplicasAvailable"),
    lambda o: o["metadata"].update(generation=2),
    _take_replicas,
    lambda o: o["metadata"]["labels"].update(team="x"),
    lambda o: o["metadata"].update(ownerReferences=[]),
    lambda o: o["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"),
], ids=["readiness", "condition", "spec-generation", "ownership", "labels", "owner-refs",
        "being-deleted"])
def test_deployment_changes_the_controller_cares_about(edit: Callable[[Obj], None]) -> None:
    before = raw_deployment()
    after = changed(before, edit)
    after["metadata"]["resourceVersion"] = "201"
    assert predicates.deployment_changed(cached(before), cached(after))


@pytest.mark.parametrize("edit", [
    lambda o: None,
    lambda o: o["metadata"]["managedFields"][0].update(time="2026-01-01T00:09:00Z"),
    lambda o: o["status"]["conditions"][0].update(lastUpdateTime="2026-01-01T00:09:00Z"),
], ids=["resource-version", "managed-fields-time", "condition-update-time"])
def test_bookkeeping_only_deployment_changes_are_not_worth_a_reconcile(
        edit: Callable[[Obj], None]) -> None:
    before = raw_deployment()
    after = changed(before, edit)
    after["metadata"]["resourceVersion"] = "201"
    assert not predicates.deployment_changed(cached(before), cached(after))


# --------------------------------------------------------------------------- owner_key


def test_owner_key_is_the_controlling_apptask() -> None:
    assert predicates.owner_key(raw_deployment()) == ObjectKey("demo", "web")


def test_owner_key_of_a_deployment_without_an_apptask_controller_is_none() -> None:
    other = changed(raw_deployment(), lambda o: o["metadata"].update(ownerReferences=[
        {**OWNER_REF, "kind": "Rollout", "apiVersion": "argoproj.io/v1alpha1"}]))
    assert predicates.owner_key(other) is None


def raw_service() -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "demo", "uid": "s-1",
                         "resourceVersion": "7", "ownerReferences": [OWNER_REF],
                         "managedFields": [managed("ssa-controller", "Apply",
                                                   [("f:spec", "f:ports")], "t1")]},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.0.0.7"},
            "status": {"loadBalancer": {}}}


@pytest.mark.parametrize(("change", "worth"), [
    (lambda s: s["status"].update(loadBalancer={"ingress": [{"ip": "1.2.3.4"}]}), False),
    (lambda s: s["metadata"].update(resourceVersion="8"), False),
    (lambda s: s["spec"]["ports"][0].update(port=81), True),
    (lambda s: s["metadata"].update(annotations={"a": "b"}), True),
    (lambda s: s["metadata"].update(labels={}), True),
    (lambda s: s["metadata"].update(ownerReferences=[]), True),
    (lambda s: s["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"), True),
    (lambda s: s["metadata"]["managedFields"].append(
        managed("kubectl-edit", "Update", [("f:spec", "f:ports")], "t2")), True),
])
def test_a_service_is_worth_a_reconcile_unless_only_its_status_or_version_moved(
        change: Callable[[Obj], None], worth: bool) -> None:
    after = copy.deepcopy(raw_service())
    change(after)
    assert predicates.service_changed(cached(raw_service()), cached(after)) is worth
    assert predicates.service_changed(None, cached(after))
    assert predicates.service_changed(cached(after), None)


def test_a_services_owner_is_the_apptask_of_its_controller_reference() -> None:
    assert predicates.owner_key(raw_service()) == ObjectKey("demo", "web")
