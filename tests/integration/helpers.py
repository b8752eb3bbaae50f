"""Small helpers for integration tests: AppTask bodies and reads of the objects under test."""

from __future__ import annotations

from typing import Any

from ssa_controller.kube import APPTASKS, DEPLOYMENTS, ApiError, Kube


def apptask(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "nginx:1.25", **spec}}


def put_apptask(kube: Kube, obj: dict[str, Any], manager: str = "tests") -> dict[str, Any]:
    """Create or replace an AppTask's spec (server-side apply as the test user)."""
    meta = obj["metadata"]
    return kube.apply(APPTASKS.path(meta["namespace"], meta["name"]), obj, field_manager=manager,
                      force=True)


def get_deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(DEPLOYMENTS.path(namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def get_apptask(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(APPTASKS.path(namespace, name))


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def status_of(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return get_apptask(kube, namespace, name).get("status", {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})
