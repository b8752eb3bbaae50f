"""Adoption of a Deployment made by `kubectl apply` (client-side) or `kubectl create`.

Server-side apply shares a field with every manager that set the same value, so after a plain
forced apply the client-side managers would still co-own the AppTask's fields and a field the
AppTask later drops would stay. As client-go's csaupgrade does, the fields the AppTask manages
are moved from those managers' entries into the controller's Apply entry first, in one JSON
patch guarded by the object's resourceVersion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import fieldset
from .kube import DEPLOYMENTS, JSON_PATCH, Kube, rfc3339

CLIENT_SIDE_MANAGERS = frozenset({"kubectl-client-side-apply", "before-first-apply",
                                  "kubectl-create", "kubectl"})


def _marks_parent_of(path: fieldset.Path, wanted: frozenset[fieldset.Path]) -> bool:
    """Whether `path` is the "." ownership mark of a map or list holding a wanted field: the
    API server gives the whole list back to whoever keeps that mark."""
    if not path or path[-1] != ".":
        return False
    parent = path[:-1]
    return any(w[:len(parent)] == parent and len(w) > len(path) for w in wanted)


def migrate(entries: list[Mapping[str, Any]], wanted: frozenset[fieldset.Path], manager: str,
            api_version: str, now: str) -> list[dict[str, Any]] | None:
    """managedFields with the wanted paths moved from client-side managers to `manager`'s
    Apply entry, or None when there is nothing to move. Pure."""
    moved: set[fieldset.Path] = set()
    result: list[dict[str, Any]] = []
    for entry in entries:
        if entry.get("manager") in CLIENT_SIDE_MANAGERS and entry.get("operation") == "Update" \
                and not entry.get("subresource"):
            paths = set(fieldset.flatten(entry.get("fieldsV1") or {}))
            taken = {p for p in paths if p in wanted or _marks_parent_of(p, wanted)}
            moved |= taken
            if paths - taken:
                result.append({**entry, "fieldsV1": fieldset.to_fields(paths - taken)})
        else:
            result.append(dict(entry))
    if not moved:
        return None
    for entry in result:
        if (entry.get("manager"), entry.get("operation")) == (manager, "Apply"):
            paths = set(fieldset.flatten(entry.get("fieldsV1") or {})) | moved
            entry["fieldsV1"] = fieldset.to_fields(paths)
            return result
    result.append({"manager": manager, "operation": "Apply", "apiVersion": api_version,
                   "time": now, "fieldsType": "FieldsV1",
                   "fieldsV1": fieldset.to_fields(moved)})
    return result


def take_over_client_side_fields(kube: Kube, live: Mapping[str, Any], body: Mapping[str, Any],
                                 manager: str) -> None:
    """Move the client-side ownership of the body's fields on the live Deployment to `manager`."""
    meta = live["metadata"]
    path = DEPLOYMENTS.path(meta["namespace"], meta["name"])
    current = kube.get(path)
    entries = migrate(current["metadata"].get("managedFields") or [],
                      fieldset.body_paths(body), manager, "apps/v1", rfc3339())
    if entries is None:
        return
    kube.patch(path, [
        {"op": "test", "path": "/metadata/resourceVersion",
         "value": current["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/metadata/managedFields", "value": entries},
    ], JSON_PATCH)
