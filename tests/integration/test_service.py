"""The Service beside the Deployment (spec.service) against a real kube-apiserver v1.20.2 with
kube-controller-manager: created, changed, released, restored once after another writer's
change, deleted when the spec drops it, garbage-collected with its AppTask; one apply per
child that changed (audit log), idle resyncs sending nothing; a Service of the name the
AppTask does not control is a conflict, never adopted nor deleted."""

from __future__ import annotations

import json
import signal
from typing import Any

from helpers import CONTROLLER, apptask, condition, get_service, put_apptask, scoped
from test_dryrun_and_fights import run_diff

from ssa_controller.apptask import desired
from ssa_controller.client.resources import APPTASKS, SERVICES
from ssa_controller.client.wire import MERGE_PATCH

PORTS = [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]
ANNOTATIONS = {"example.com/a": "1", "example.com/b": "2"}


def synced(admin: Any, namespace: str, name: str, reason: str = "Synced") -> dict[str, Any]:
    """The AppTask's status once it describes its current generation with this Synced reason,
    else {}."""
    task = admin.get(APPTASKS.path(namespace, name))
    st = task.get("status") or {}
    if st.get("observedGeneration") != task["metadata"]["generation"] \
            or condition(st, "Synced").get("reason") != reason:
        return {}
    return st


def writes(cluster: Any, since: int, namespace: str, resource: str,
           verb: str = "patch") -> int:
    return len(cluster.audit.select(since, user=CONTROLLER, namespace=namespace,
                                    resource=resource, verb=verb))


def test_a_service_is_created_changed_released_restored_deleted_and_collected(
        admin, controller, namespace, cluster, poll_until):
    process = controller(scoped(namespace, resync={"period": "2s", "jitter": 0}))

    def put(**spec: Any) -> None:
        put_apptask(admin, apptask("web", namespace, ports=PORTS, **spec))

    def converged() -> dict[str, Any]:
        return poll_until(lambda: synced(admin, namespace, "web"), timeout=60,
                          message="the AppTask Synced at its generation")

    mark = cluster.audit.mark()
    put(service={"ports": [{"name": "http", "port": 80}], "annotations": ANNOTATIONS})
    status = converged()
    assert status["serviceName"] == status["deploymentName"] == "web"
    assert condition(status, "Synced")["message"] == \
        "Deployment web and Service web match the spec"
    service = get_service(admin, namespace, "web")
    assert service["spec"]["selector"] == {desired.NAME_LABEL: "web"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 8080)]
    assert service["metadata"]["labels"] == {desired.MANAGED_BY_LABEL: desired.MANAGED_BY_VALUE}
    [owner] = service["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "AppTask", True, True)
    assert service["metadata"]["annotations"] == ANNOTATIONS
    assert writes(cluster, mark, namespace, "services") == 1  # one apply creates it

    # A change of the Service alone: one apply of the Service, none of the Deployment.
    mark = cluster.audit.mark()
    put(service={"type": "NodePort", "annotations": ANNOTATIONS, "ports": [
        {"name": "http", "port": 80}, {"name": "metrics", "port": 9000}]})
    converged()
    service = get_service(admin, namespace, "web")
    assert service["spec"]["type"] == "NodePort"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        (80, 8080), (9000, 9090)]
    assert (writes(cluster, mark, namespace, "services"),
            writes(cluster, mark, namespace, "deployments")) == (1, 0)

    # Released: an annotation the spec stops setting is removed by the server.
    mark = cluster.audit.mark()
    put(service={"type": "NodePort", "annotations": {"example.com/a": "1"}, "ports": [
        {"name": "http", "port": 80}, {"name": "metrics", "port": 9000}]})
    converged()
    assert get_service(admin, namespace, "web")["metadata"]["annotations"] == {
        "example.com/a": "1"}
    assert writes(cluster, mark, namespace, "services") == 1

    # Another writer's change is restored, by one apply.
    mark = cluster.audit.mark()
    admin.patch(SERVICES.path(namespace, "web"), {"metadata": {"annotations": {
        "example.com/a": "taken"}}}, MERGE_PATCH, {"fieldManager": "intruder"})
    poll_until(lambda: get_service(admin, namespace, "web")["metadata"]["annotations"] == {
        "example.com/a": "1"}, timeout=30, message="the annotation restored")

    # A change of the Deployment alone: one apply of the Deployment, none of the Service.
    put(image="nginx:1.27", service={"type": "NodePort", "annotations": {"example.com/a": "1"},
                                     "ports": [{"name": "http", "port": 80},
                                               {"name": "metrics", "port": 9000}]})
    converged()
    assert (writes(cluster, mark, namespace, "services"),
            writes(cluster, mark, namespace, "deployments")) == (1, 1)

    def quiet_resyncs() -> bool:
        """Whether two resyncs wrote nothing (an Event of the last steps may still be on its
        way: then the next two are watched)."""
        mark, start = cluster.audit.mark(), process.reconciles()
        poll_until(lambda: process.reconciles() >= start + 2, timeout=30,
                   message="two resyncs")
        return not cluster.audit.select(mark, user=CONTROLLER, namespace=namespace,
                                        writes=True)
    poll_until(quiet_resyncs, timeout=90, message="resyncs that send nothing")

    # The spec drops its Service: deleted (once), the status no longer names it.
    mark = cluster.audit.mark()
    put()
    poll_until(lambda: get_service(admin, namespace, "web") is None, timeout=30,
               message="the Service deleted")
    assert "serviceName" not in converged()
    assert writes(cluster, mark, namespace, "services", "delete") == 1
    assert writes(cluster, mark, namespace, "services") == 0

    # Asked for again, then the AppTask deleted: the Service goes by garbage collection.
    put(service={"ports": [{"port": 80}]})
    converged()
    assert get_service(admin, namespace, "web") is not None
    mark = cluster.audit.mark()
    admin.delete(APPTASKS.path(namespace, "web"))
    poll_until(lambda: get_service(admin, namespace, "web") is None, timeout=60,
               message="the Service garbage-collected with its AppTask")
    assert writes(cluster, mark, namespace, "services", "delete") == 0  # not the controller


def test_a_service_of_the_name_the_apptask_does_not_control_is_a_conflict_never_adopted(
        admin, controller, namespace, cluster, poll_until):
    """Refused (ServiceExists) while the Deployment is applied all the same; the foreign
    Service is left as it is, and not deleted when the spec drops its Service."""
    foreign = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": namespace},
               "spec": {"ports": [{"port": 80}], "selector": {"app": "other"}}}
    before = admin.create(SERVICES.path(namespace), foreign, {"fieldManager": "kubectl-create"})
    controller(scoped(namespace, apply={"adoptExisting": True}))
    mark = cluster.audit.mark()
    put_apptask(admin, apptask("web", namespace, service={"ports": [{"port": 8080}]}))
    status = poll_until(lambda: synced(admin, namespace, "web", "ServiceExists"), timeout=60,
                        message="the Service refused")
    assert status["phase"] == "Conflict" and "serviceName" not in status
    assert status["deploymentName"] == "web"
    assert condition(status, "Synced")["message"] == (
        "Service web exists and is not managed by this AppTask; a Service is never adopted")
    after = get_service(admin, namespace, "web")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert writes(cluster, mark, namespace, "services") == 0

    put_apptask(admin, apptask("web", namespace))
    poll_until(lambda: synced(admin, namespace, "web"), timeout=60, message="Synced")
    assert get_service(admin, namespace, "web")["metadata"]["uid"] == before["metadata"]["uid"]
    assert writes(cluster, mark, namespace, "services", "delete") == 0


def test_diff_plans_the_service_beside_the_deployment(admin, controller, namespace, cluster,
                                                      tmp_path, poll_until):
    """`diff` shows the Service's plan (created, unchanged, deleted) and sends nothing."""
    put_apptask(admin, apptask("web", namespace, service={"ports": [{"port": 80}]}))

    def plans() -> tuple[int, dict[str, str]]:
        planned = run_diff(cluster, tmp_path, namespace, "-o", "json")
        assert planned.returncode in (0, 1), planned.stderr
        return planned.returncode, {p["key"]: p["action"] for p in json.loads(planned.stdout)}

    web, service = f"{namespace}/web", f"{namespace}/web (Service)"
    assert plans() == (1, {web: "created", service: "created"})
    assert get_service(admin, namespace, "web") is None
    process = controller(scoped(namespace))
    poll_until(lambda: synced(admin, namespace, "web"), timeout=60, message="Synced")
    assert process.stop(signal.SIGTERM) == 0
    assert plans() == (0, {web: "unchanged", service: "unchanged"})
    put_apptask(admin, apptask("web", namespace))
    mark = cluster.audit.mark()
    assert plans() == (1, {web: "unchanged", service: "deleted"})
    assert get_service(admin, namespace, "web") is not None
    assert cluster.audit.select(mark, user=CONTROLLER, namespace=namespace, writes=True) == []
