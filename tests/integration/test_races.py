"""Races the controller loses by a moment, forced against the real API server (issue 24, items 4
and 7): another writer changes the Deployment between the read and the ownership move of its
adoption; the AppTask is deleted and created again under its name between the read and the
status write of a reconcile.

The controller runs in this process (helpers.in_process, as the non-admin user bound by
manifests/rbac.yaml) with a client whose hook acts just before the request in question is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from helpers import (
    HookedKube,
    apptask,
    container,
    controller_client,
    get_deployment,
    in_process,
    put_apptask,
    status_of,
    unowned_deployment,
)

from ssa_controller.apptask import desired
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, EVENTS, Obj
from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.envtest import ControlPlane, poll_until


def phases_written(kube: HookedKube, name: str) -> list[str]:
    """The phases of the status writes the controller sent for AppTask `name`."""
    return [body[-1]["value"]["phase"] for method, path, body in kube.writes
            if path.endswith(f"/apptasks/{name}/status")]


def test_an_adoption_racing_a_change_of_the_deployment_is_retried_without_a_report(
        admin: Kube, cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """The ownership move is a JSON patch guarded by a test of the resourceVersion it read; an
    annotation set in between (a rollout, an HPA) fails that test (422). A conflict to try
    again with the normal backoff: never phase Invalid, no Warning Event."""
    labels = {desired.NAME_LABEL: "adopted"}
    admin.create(DEPLOYMENTS.path(namespace), unowned_deployment(namespace, "adopted", labels),
                 {"fieldManager": "kubectl-create"})  # as `kubectl create` makes it
    kube: HookedKube = controller_client(cluster, tmp_path)

    def annotated_first(send: Callable[[], Obj]) -> Obj:
        admin.patch(DEPLOYMENTS.path(namespace, "adopted"),
                    {"metadata": {"annotations": {"example.com/rollout": "1"}}}, MERGE_PATCH)
        return send()

    def ownership_move(method: str, path: str, params: Mapping[str, Any]) -> bool:
        return method == "PATCH" and path.endswith("/deployments/adopted") \
            and "fieldManager" not in params  # the JSON patch, not an apply
    fired = kube.hook(ownership_move, annotated_first)
    with in_process(kube, namespace, post_events=True, apply={"adoptExisting": True}):
        task = put_apptask(admin, apptask("adopted", namespace, replicas=1))
        poll_until(fired.is_set, timeout=30, message="the ownership move, raced")
        raced = time.monotonic()
        deployment = poll_until(
            lambda: (d := get_deployment(admin, namespace, "adopted"))
            and desired.controller_ref(d) and d, timeout=30, message="adopted on a retry")
        print(f"adopted {time.monotonic() - raced:.1f}s after the lost race")
        assert desired.controller_ref(deployment)["uid"] == task["metadata"]["uid"]
        assert deployment["metadata"]["annotations"]["example.com/rollout"] == "1"
        poll_until(lambda: status_of(admin, namespace, "adopted").get("phase") == "Ready",
                   timeout=30, message="Ready")
    assert "Invalid" not in phases_written(kube, "adopted")
    warnings = [e for e in admin.list(EVENTS.path(namespace))["items"] if e["type"] == "Warning"]
    assert not warnings, [(e["reason"], e["note"]) for e in warnings]


def test_a_status_write_for_an_apptask_created_again_meanwhile_is_refused(
        admin: Kube, cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """The status write carries the uid of the AppTask the reconcile read, in a JSON patch
    test: the server refuses it on an AppTask of the same name created since (on v1.20.2 the
    status subresource ignores a merge patch's metadata.uid and writes onto the new one)."""
    kube: HookedKube = controller_client(cluster, tmp_path)
    written: list[Obj | ApiError] = []

    def created_again_first(send: Callable[[], Obj]) -> Obj:
        admin.delete(APPTASKS.path(namespace, "twin"))
        poll_until(lambda: not any(t["metadata"]["name"] == "twin" for t in admin.list(
            APPTASKS.path(namespace))["items"]), timeout=10, message="the first twin gone")
        put_apptask(admin, apptask("twin", namespace, replicas=0, image="nginx:1.27"))
        try:
            written.append(send())
        except ApiError as exc:
            written.append(exc)
            raise
        return written[-1]  # type: ignore[return-value]

    fired = kube.hook(lambda method, path, params: path.endswith("/twin/status"),
                      created_again_first)
    with in_process(kube, namespace):
        put_apptask(admin, apptask("twin", namespace, replicas=0))
        poll_until(fired.is_set, timeout=30, message="the first twin's status write")
        (stale,) = written
        assert isinstance(stale, ApiError) and stale.status == 422, stale
        poll_until(lambda: (d := get_deployment(admin, namespace, "twin"))
                   and container(d)["image"] == "nginx:1.27"
                   and status_of(admin, namespace, "twin").get("phase") == "Ready",
                   timeout=90, message="the second twin converged")
