"""Ownership transfers between field managers (the Kubernetes docs' "Transferring ownership").

Adoption of a Deployment made by `kubectl apply` (client-side) or `kubectl create`: server-side
apply shares a field with every manager that set the same value, so after a plain forced apply
the client-side managers would still co-own the AppTask's fields and a field the AppTask later
drops would stay. As client-go's csaupgrade does, the fields the AppTask manages are moved from
those managers' entries into the controller's Apply entry first, in one JSON patch guarded by the
object's resourceVersion, and only once a dry-run apply shows the server accepts the body, so a
refused apply (an immutable selector, an admission webhook) leaves the Deployment as it was. If
the Deployment changed between the read and the patch (its rollout, an HPA), the guard's test
fails: that is a lost race, raised as a conflict (RACED) to be tried again, not a refused body.

Hand-off of a released field: when an AppTask stops specifying `replicas` (to leave scaling to an
HPA or a person), the apply that releases `spec.replicas` would make the server remove it if no
other manager owns it (on v1.20 the scale subresource records no managedFields), and defaulting
would set 1 replica. So the field is first applied with its live value by a second manager,
`<fieldManager>-handoff`, which keeps owning it; the controller's release then leaves it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..client.kube import Kube
from ..client.resources import DEPLOYMENTS
from ..client.wire import JSON_PATCH, ApiError, failed_test, rfc3339
from ..runtime import fieldset

CLIENT_SIDE_MANAGERS = frozenset({"kubectl-client-side-apply", "before-first-apply",
                                  "kubectl-create", "kubectl"})
HANDED_OFF: frozenset[fieldset.Path] = frozenset({("f:spec", "f:replicas")})
"""Fields an AppTask that stops specifying them leaves to others with their live value, instead
of having them removed."""
HANDOFF_SUFFIX = "-handoff"
MAX_MANAGER_LENGTH = 128
"""The API server's limit on a field manager's name."""
RACED = "AdoptionRaced"
"""The reason of the ApiError(409) raised when the Deployment changed while its ownership was
moved."""


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


def take_over_client_side_fields(kube: Kube, live: Mapping[str, Any], body: dict[str, Any],
                                 manager: str, force: bool) -> None:
    """Move the client-side ownership of the body's fields on the live Deployment to `manager`,
    once a dry-run apply of `body` succeeds (an ApiError from it is raised and nothing is
    written), and raising ApiError(409, RACED) when the Deployment changed meanwhile."""
    meta = live["metadata"]
    path = DEPLOYMENTS.path(meta["namespace"], meta["name"])
    kube.apply(path, body, field_manager=manager, force=force, dry_run=True)
    current = kube.get(path)
    entries = migrate(current["metadata"].get("managedFields") or [],
                      fieldset.body_paths(body), manager, "apps/v1", rfc3339())
    if entries is None:
        return
    guarded_patch(kube, current, [
        {"op": "test", "path": "/metadata/resourceVersion",
         "value": current["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/metadata/managedFields", "value": entries},
    ], "its ownership was moved")


def guarded_patch(kube: Kube, live: Mapping[str, Any], operations: list[dict[str, Any]],
                  what: str, field_manager: str | None = None) -> dict[str, Any]:
    """Send a JSON patch to the Deployment `live` whose operations test what they rely on
    (its resourceVersion first); a failed test means it changed since it was read, a lost race
    raised as ApiError(409, RACED) (`what` says what was being done), to be tried again."""
    meta = live["metadata"]
    params = None if field_manager is None else {"fieldManager": field_manager}
    try:
        return kube.patch(DEPLOYMENTS.path(meta["namespace"], meta["name"]), operations,
                          JSON_PATCH, params)
    except ApiError as exc:
        if not failed_test(exc):
            raise
        raise ApiError(409, RACED, f"Deployment {meta['name']} changed after it was read "
                       f"(resourceVersion {meta['resourceVersion']}) while {what}",
                       exc.body) from exc


def handoff_manager(manager: str) -> str:
    """The field manager that keeps the fields `manager` hands off."""
    return manager[:MAX_MANAGER_LENGTH - len(HANDOFF_SUFFIX)] + HANDOFF_SUFFIX


def handoff_body(body: Mapping[str, Any], live: Mapping[str, Any], owners: fieldset.Owners,
                 manager: str) -> dict[str, Any] | None:
    """The apply body with which handoff_manager(manager) takes over, at their live values, the
    HANDED_OFF fields that `manager` owns, `body` no longer sets and no other manager owns; None
    when there are none. Pure."""
    released = (fieldset.applied_by(owners, manager) - fieldset.body_paths(body)) & HANDED_OFF
    owned_elsewhere = {p for paths in fieldset.taken_by_others(owners, manager, released).values()
                       for p in paths}
    fields: dict[str, Any] = {}
    for path in sorted(released - owned_elsewhere):
        _copy_field(live, fields, [segment[2:] for segment in path])
    if not fields:
        return None
    meta = body["metadata"]
    return {"apiVersion": body["apiVersion"], "kind": body["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, **fields}


def _copy_field(source: Mapping[str, Any], target: dict[str, Any], names: list[str]) -> None:
    """Copy the value at the (map-only) field path `names` from `source` into `target`, if set."""
    *parents, leaf = names
    for name in parents:
        source = source.get(name) or {}
    if leaf in source:
        for name in parents:
            target = target.setdefault(name, {})
        target[leaf] = source[leaf]
