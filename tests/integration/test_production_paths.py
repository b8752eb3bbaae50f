"""Production paths against a real kube-apiserver: a fix shipped during a fight, handing
`spec.replicas` over when an AppTask stops specifying it, and refusals that are not about the
spec (an adoption the server refuses) retried slowly without half-adopting the Deployment."""

from __future__ import annotations

import time
from typing import Any

from helpers import (
    CONTROLLER,
    Rival,
    apptask,
    condition,
    container,
    get_apptask,
    get_deployment,
    put_apptask,
    scoped,
    status_of,
    unowned_deployment,
)

from ssa_controller.client.resources import DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH
from ssa_controller.envtest import poll_until

HANDOFF_MANAGER = "ssa-controller-handoff"


def test_a_new_generation_ends_a_fight_at_once(admin, controller, namespace):
    controller(scoped(namespace, fights={"threshold": 3, "window": "5s",
                                         "backoffBase": "10s", "backoffCap": "60s"}))
    put_apptask(admin, apptask("fixed", namespace, replicas=2))
    poll_until(lambda: get_deployment(admin, namespace, "fixed"), timeout=30, message="created")
    with Rival(admin, namespace, "fixed"):
        poll_until(lambda: condition(status_of(admin, namespace, "fixed"), "Conflict")
                   .get("reason") == "FieldFight", timeout=20, message="fight detected")
        # Damped, the next re-apply would come 10 s after the last one; a fix must not wait.
        put_apptask(admin, apptask("fixed", namespace, replicas=2, image="nginx:1.27"))
        poll_until(lambda: container(get_deployment(admin, namespace, "fixed"))["image"]
                   == "nginx:1.27", timeout=2, message="the new image within 2 s")


def replicas_of(admin, namespace: str, name: str) -> int:
    return int(get_deployment(admin, namespace, name)["spec"]["replicas"])


def owners_of_replicas(deployment: dict[str, Any]) -> set[str]:
    return {entry["manager"] for entry in deployment["metadata"].get("managedFields", [])
            if "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})}


def settled_at(admin, namespace: str, name: str, generation: int) -> bool:
    status = status_of(admin, namespace, name)
    return status.get("observedGeneration") == generation and status.get("phase") == "Ready"


def test_removing_replicas_keeps_the_scale_and_leaves_it_to_others(admin, controller,
                                                                   namespace):
    process = controller(scoped(namespace, resync={"period": "1s", "jitter": 0}))
    put_apptask(admin, apptask("scaled", namespace, replicas=3))
    poll_until(lambda: settled_at(admin, namespace, "scaled", 1), timeout=60, message="Ready")
    put_apptask(admin, apptask("scaled", namespace))
    poll_until(lambda: settled_at(admin, namespace, "scaled", 2), timeout=60,
               message="replicas released")
    released = get_deployment(admin, namespace, "scaled")
    assert released["spec"]["replicas"] == 3
    assert owners_of_replicas(released) == {HANDOFF_MANAGER}

    # `kubectl scale`: the scale subresource (on v1.20 it records no managedFields).
    admin.patch(DEPLOYMENTS.path(namespace, "scaled", "scale"), {"spec": {"replicas": 4}},
                MERGE_PATCH)
    start = process.reconciles()
    poll_until(lambda: process.reconciles() >= start + 3, timeout=30, message="three resyncs")
    assert replicas_of(admin, namespace, "scaled") == 4
    put_apptask(admin, apptask("scaled", namespace, image="nginx:1.27"))
    poll_until(lambda: settled_at(admin, namespace, "scaled", 3), timeout=60,
               message="the image change applied")
    assert replicas_of(admin, namespace, "scaled") == 4


def foreign_deployment(namespace: str, name: str) -> dict[str, Any]:
    """A Deployment of the AppTask's name whose (immutable) selector differs from the one the
    controller renders."""
    return unowned_deployment(namespace, name, {"app": f"{name}-legacy"})


def client_side_fields(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """managedFields without kube-controller-manager's (status writes change them)."""
    return [entry for entry in deployment["metadata"].get("managedFields", [])
            if entry["manager"] != "kube-controller-manager"]


RETRY_WINDOW = 10.0
"""Seconds over which the refused adoption's retries are counted. With backoff 0.5 s doubling to
a 3 s cap: about 4-5 tries; retried on every 1 s resync instead: 10 more."""


def test_a_refused_adoption_is_retried_with_backoff_and_leaves_the_deployment_alone(
        admin, controller, namespace, cluster):
    admin.create(DEPLOYMENTS.path(namespace), foreign_deployment(namespace, "legacy"),
                 {"fieldManager": "kubectl-create"})
    before = client_side_fields(get_deployment(admin, namespace, "legacy"))
    controller(scoped(namespace, apply={"adoptExisting": True},
                      backoff={"base": "0.5s", "cap": "3s"}, resync={"period": "1s", "jitter": 0}))
    put_apptask(admin, apptask("legacy", namespace, replicas=1))
    status = poll_until(lambda: (s := status_of(admin, namespace, "legacy")).get("phase")
                        == "Invalid" and s, timeout=30, message="the refusal reported")
    synced = condition(status, "Synced")
    assert synced["reason"] == "ApplyRejected" and "immutable" in synced["message"]

    mark = cluster.audit.mark()
    time.sleep(RETRY_WINDOW)
    tries = cluster.audit.select(mark, user=CONTROLLER, resource="deployments", verb="patch",
                                 name="legacy")
    assert 2 <= len(tries) <= 7, f"{len(tries)} applies in {RETRY_WINDOW}s"
    assert all(t.dry_run and t.code == 422 for t in tries)
    assert cluster.audit.count(mark, user=CONTROLLER, resource="apptasks", name="legacy",
                               writes=True) == 0
    legacy = get_deployment(admin, namespace, "legacy")
    assert client_side_fields(legacy) == before, "half-adopted"
    assert "ownerReferences" not in legacy["metadata"]

    admin.delete(DEPLOYMENTS.path(namespace, "legacy"))
    uid = get_apptask(admin, namespace, "legacy")["metadata"]["uid"]
    poll_until(lambda: (d := get_deployment(admin, namespace, "legacy"))
               and d["metadata"].get("ownerReferences", [{}])[0].get("uid") == uid,
               timeout=3 + 3, message="its own Deployment created at the next retry")
    poll_until(lambda: status_of(admin, namespace, "legacy").get("phase") == "Ready",
               timeout=60, message="Ready")
