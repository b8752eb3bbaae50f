"""The reconciler's Service part, against the recording stand-in for the Kube client of
test_reconciler.py: one apply per child that changed, never one of an unchanged child, the
Service's drift, take-backs, refusals and deletion, and the status covering both children."""

from __future__ import annotations

import copy
from typing import Any

from test_reconciler import KEY, MANAGER, Harness, apptask, deployment, managed

from ssa_controller.apptask import diff, service
from ssa_controller.runtime import fieldset

Obj = dict[str, Any]
SERVICE = {"ports": [{"name": "http", "port": 80}]}
PORTS = [{"name": "http", "containerPort": 8080}]


def live_service(task: Obj, *others: Obj, uid: str = "s1", **spec: Any) -> Obj:
    """The Service as the controller applied it for `task` (its spec then changed by `spec`,
    co-owned by `others`), as its watch brings it."""
    body = service.render(task)
    assert body is not None
    live = copy.deepcopy(body)
    live["spec"] = {**live["spec"], "clusterIP": "10.0.0.7", "sessionAffinity": "None", **spec}
    live["metadata"].update(uid=uid, managedFields=[
        managed(MANAGER, fieldset.body_paths(body)), *others])
    return live


def converged(task: Obj) -> Harness:
    """A harness whose caches hold `task`, its Deployment and its Service as applied."""
    harness = Harness()
    harness.given(task, deployment(task))
    harness.service_cache.put({**live_service(task), "metadata": {
        **live_service(task)["metadata"], "resourceVersion": harness.kube.next_revision()}})
    return harness


def service_changed(harness: Harness, live: Obj) -> None:
    live["metadata"]["resourceVersion"] = harness.kube.next_revision()
    harness.service_cache.put(live)


def conditions(harness: Harness) -> dict[str, Obj]:
    task = harness.apptasks.get(KEY)
    assert task is not None
    return {c["type"]: c for c in task["status"]["conditions"]}


def test_a_new_apptask_with_a_service_creates_each_child_once() -> None:
    harness = Harness()
    harness.given(apptask(ports=PORTS, service=SERVICE))
    result = harness.reconcile()
    assert harness.kube.kinds() == ["get", "service-apply", "create", "status"]
    created = harness.kube.requests[1][3]
    assert "resourceVersion" not in created["metadata"]  # v1.20 refuses it on a Service
    assert created["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP",
                                         "targetPort": 8080}]
    assert result.outcome == "applied"
    status = harness.apptasks.get(KEY)["status"]
    assert status["serviceName"] == status["deploymentName"] == "web"
    assert conditions(harness)["Synced"]["message"] == \
        "Deployment web and Service web match the spec"


def test_a_resync_over_both_children_in_sync_sends_nothing() -> None:
    task = apptask(service=SERVICE)
    harness = converged(task)
    harness.reconcile()
    assert harness.kube.kinds() == ["status"]  # the first status, nothing applied
    harness.reconcile()
    assert harness.kube.kinds() == []


def test_a_change_of_the_deployment_alone_applies_the_deployment_alone() -> None:
    harness = converged(apptask(service=SERVICE))
    harness.given(apptask(2, image="nginx:1.27", service=SERVICE))
    assert harness.reconcile().outcome == "applied"
    assert [k for k in harness.kube.kinds() if k != "status"] == ["apply"]


def test_a_change_of_the_service_alone_applies_the_service_alone() -> None:
    harness = converged(apptask(service=SERVICE))
    harness.given(apptask(2, service={"type": "NodePort", **SERVICE}))
    assert harness.reconcile().outcome == "applied"
    assert [k for k in harness.kube.kinds() if k != "status"] == ["service-apply"]
    assert harness.kube.requests[0][3]["spec"]["type"] == "NodePort"


def test_another_writers_change_of_the_service_is_restored_and_said() -> None:
    task = apptask(service=SERVICE)
    harness = converged(task)
    harness.reconcile()  # the status says Synced
    service_changed(harness, live_service(
        task, managed("kubectl-edit", frozenset({("f:spec", "f:ports")}), "Update"),
        ports=[{"name": "http", "port": 81, "protocol": "TCP"}]))
    assert harness.reconcile().outcome == "applied"
    assert harness.kube.kinds() == ["service-apply"]
    assert harness.events.notes[-1].startswith("Service web: restored ")


def test_removing_the_service_deletes_the_controlled_one_by_its_uid() -> None:
    harness = converged(apptask(service=SERVICE))
    harness.given(apptask(2))
    assert harness.reconcile().outcome == "applied"
    assert harness.kube.requests[0] == ("delete", "/api/v1/namespaces/demo/services/web", {
        "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "s1"}})
    assert harness.kube.kinds()[1:] == ["status"]


def test_a_service_of_the_name_the_apptask_does_not_control_is_never_deleted() -> None:
    task = apptask()
    harness = Harness()
    harness.given(task, deployment(task))
    foreign = live_service(apptask(service=SERVICE))
    foreign["metadata"]["ownerReferences"][0]["uid"] = "another"
    service_changed(harness, foreign)
    harness.reconcile()
    assert "delete" not in harness.kube.kinds()


def test_a_foreign_service_is_refused_and_the_deployment_applied_all_the_same() -> None:
    harness = Harness()
    harness.given(apptask(service=SERVICE))
    harness.kube.existing_service = {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "web", "namespace": "demo", "uid": "x1", "resourceVersion": "7"},
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    result = harness.reconcile()
    assert harness.kube.kinds() == ["get", "create", "status"]
    assert result.outcome == "applied"  # the Deployment's
    task = harness.apptasks.get(KEY)
    assert task["status"]["phase"] == "Conflict" and "serviceName" not in task["status"]
    synced = conditions(harness)["Synced"]
    assert (synced["status"], synced["reason"]) == ("False", "ServiceExists")
    assert synced["message"] == ("Service web exists and is not managed by this AppTask; a "
                                 "Service is never adopted")
    assert harness.events.reasons.count("ServiceExists") == 1


def test_a_service_the_server_refuses_is_reported_and_the_deployment_applied() -> None:
    from ssa_controller.client.wire import ApiError
    harness = Harness()
    harness.given(apptask(service=SERVICE))
    harness.kube.failures["service-apply"] = ApiError(
        422, "Invalid", 'Service "web" is invalid: spec.ports[0].nodePort: Forbidden')
    harness.reconcile()
    assert harness.kube.kinds() == ["get", "service-apply", "create", "status"]
    synced = conditions(harness)["Synced"]
    assert (synced["reason"], harness.apptasks.get(KEY)["status"]["phase"]) == (
        "ApplyRejected", "Invalid")
    assert synced["message"].startswith('Service web: Service "web" is invalid')


def test_a_refused_service_waits_its_backoff_unless_the_spec_changes() -> None:
    """A Deployment event (a rollout) brings no new apply of a refused Service before its retry
    is due (the harness' backoff: 1 s); a new generation is tried at once."""
    from ssa_controller.client.wire import ApiError
    harness = Harness()
    harness.given(apptask(service=SERVICE))
    harness.kube.failures["service-apply"] = ApiError(422, "Invalid", "port is allocated")
    first = harness.reconcile()
    assert harness.kube.kinds() == ["get", "service-apply", "create", "status"]
    assert first.requeue_after == 1.0
    harness.deployment_changed(copy.deepcopy(harness.kube.applied))
    harness.reconcile(after=0.5)
    assert "service-apply" not in harness.kube.kinds()
    assert conditions(harness)["Synced"]["reason"] == "ApplyRejected"
    harness.reconcile(after=0.5)
    assert harness.kube.kinds()[:2] == ["get", "service-apply"]
    harness.given(apptask(2, service={"ports": [{"port": 81}]}))
    harness.reconcile()
    assert harness.kube.kinds()[:2] == ["get", "service-apply"]


def test_a_dry_run_plans_the_service_beside_the_deployment() -> None:
    from ssa_controller.settings.config import Config
    harness = Harness(Config(dry_run=True))
    task = apptask(2)
    harness.given(task, deployment(task))
    harness.service_cache.put({**live_service(apptask(service=SERVICE)), "metadata": {
        **live_service(apptask(service=SERVICE))["metadata"], "resourceVersion": "5"}})
    result = harness.reconcile()
    assert harness.kube.kinds() == []
    assert result.service_plan == diff.Plan("demo/web (Service)", diff.Action.DELETED,
                                             detail="spec.service was removed")


def test_take_backs_of_the_service_make_a_fight_reported_as_for_the_deployment() -> None:
    """Take-backs after the controller's applies (two within the window: the harness'
    threshold) make a fight: FieldFight, its message naming the Service, the re-apply damped."""
    task = apptask(service=SERVICE)
    harness = converged(task)
    harness.reconcile()  # Synced
    taken = managed("rival", frozenset({("f:spec", "f:ports")}), "Update")
    applied = []
    for port in (81, 82, 83):
        service_changed(harness, live_service(task, taken, ports=[
            {"name": "http", "port": port, "protocol": "TCP"}]))
        result = harness.reconcile(after=1.0)
        applied.append(harness.kube.kinds().count("service-apply"))
    assert applied == [1, 1, 0]  # the third take-back makes the fight: damped
    assert result.fight_detected and result.requeue_after
    synced = conditions(harness)["Synced"]
    assert (synced["reason"], harness.apptasks.get(KEY)["status"]["phase"]) == (
        "FieldFight", "Conflict")
    assert synced["message"].startswith("Service web: ")
    assert "keeps taking back .spec.ports[port=80" in synced["message"]
    assert harness.events.reasons.count("FieldFight") == 1


def test_a_paused_apptask_says_whether_both_children_match() -> None:
    task = apptask(service=SERVICE, paused=True)
    harness = converged(task)
    harness.reconcile()
    assert harness.kube.kinds() == ["status"]
    assert conditions(harness)["Synced"]["status"] == "True"
    harness.service_cache.delete(live_service(task))
    harness.given(apptask(2, service=SERVICE, paused=True))
    harness.reconcile()
    assert harness.kube.kinds() == ["status"]
    assert conditions(harness)["Synced"]["status"] == "False"


def test_a_service_the_apptask_had_waits_a_grace_before_it_is_created_again() -> None:
    """Gone from the cache while the status names it (garbage collection may have come before
    the AppTask's deletion is seen): nothing is sent for it within the grace, then it is read
    and created again."""
    task = apptask(service=SERVICE)
    harness = converged(task)
    harness.reconcile()  # the status names the Service
    assert harness.apptasks.get(KEY)["status"]["serviceName"] == "web"
    harness.service_cache.delete({**live_service(task), "metadata": {
        **live_service(task)["metadata"], "resourceVersion": harness.kube.next_revision()}})
    waited = harness.reconcile()
    assert harness.kube.kinds() == [] and 0 < waited.requeue_after <= 1.0
    harness.reconcile(after=1.0)
    assert harness.kube.kinds()[:2] == ["get", "service-apply"]


def test_a_conflict_over_the_service_is_reported_as_for_the_deployment() -> None:
    from ssa_controller.client.wire import ApiError
    harness = Harness()
    harness.given(apptask(service=SERVICE))
    harness.kube.failures["service-apply"] = ApiError(
        409, "Conflict", "Apply failed with 1 conflict", {"details": {"causes": [
            {"message": 'conflict with "kubectl-edit": .spec.ports', "field": ".spec.ports"}]}})
    result = harness.reconcile()
    assert result.outcome == "applied" and result.error is not None  # retried, rate-limited
    synced = conditions(harness)["Synced"]
    assert (synced["reason"], harness.apptasks.get(KEY)["status"]["phase"]) == (
        "ApplyConflict", "Conflict")
    assert synced["message"] == 'Service web: apply conflicts with "kubectl-edit" over .spec.ports'
    assert harness.events.reasons[-1] == "ApplyConflict"
