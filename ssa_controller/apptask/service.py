"""Renders an AppTask's `spec.service` into the minimal server-side apply body of its Service.
Pure, no I/O.

The Service has the AppTask's name and the metadata every child has (desired.child_metadata:
the managed-by label its watch selects, the controller reference), selects the AppTask's pods
(desired.pod_selector) and holds exactly the fields the spec sets: `type`, `ports` and the
Service's `annotations`. A port without `targetPort` whose name is that of a container port
(spec.ports) targets that container port's number; any other is left to the API server, which
defaults it to the port. A spec without `service` has no Service (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..settings.config import AdmissionConfig
from . import admission, desired, fields
from .shapes import expect


def _container_ports(spec: Mapping[str, Any]) -> dict[str, int]:
    """The container's port numbers by name (render() has checked spec.ports)."""
    return {p["name"]: p["containerPort"] for p in spec.get("ports") or () if p.get("name")}


def render(apptask: Mapping[str, Any], rules: AdmissionConfig = admission.DEFAULT,
           shard: str | None = None) -> dict[str, Any] | None:
    """The apply body of the Service for `apptask` (None when its spec has no `service`), held
    to the `admission` rules, applied by the shard `shard` (None: no sharding); raises
    InvalidSpec. The spec's other fields are checked by desired.render, called first."""
    spec = apptask["spec"]
    if spec.get("service") is None:
        return None
    service = fields.SERVICE.check(spec["service"], "service")
    admission.check_service(service, rules)
    by_name = _container_ports(spec)
    ports = []
    for port in service["ports"]:
        target = by_name.get(port.get("name", ""))
        ports.append(port if "targetPort" in port or target is None
                     else {**port, "targetPort": target})
    names = [p["name"] for p in ports if "name" in p]
    expect(len(names) == len(set(names)), "service.ports", "port names must be unique")
    metadata = desired.child_metadata(apptask, shard)
    if service.get("annotations"):
        metadata["annotations"] = service["annotations"]
    body_spec: dict[str, Any] = {"selector": desired.pod_selector(apptask), "ports": ports}
    if "type" in service:
        body_spec["type"] = service["type"]
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": body_spec}
