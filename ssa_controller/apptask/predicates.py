"""Event filtering: which watch events are worth a reconcile, and of which AppTask. Pure.

The controller is level-based: an event only says "look at this key again". These predicates
keep status-only and resourceVersion-only changes (including the controller's own status
writes) from enqueueing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..runtime.objectkey import ObjectKey
from ..runtime.store import Cached
from . import desired

Obj = Mapping[str, Any]
_READINESS = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
              "availableReplicas")


def apptask_changed(old: Cached | None, new: Cached | None) -> bool:
    """An AppTask is worth a reconcile when it is new, deleted, re-created, being deleted,
    or its generation (its spec) moved."""
    if old is None or new is None:
        return True
    before, after = old.obj["metadata"], new.obj["metadata"]
    return (before.get("uid") != after.get("uid")
            or before.get("generation") != after.get("generation")
            or ("deletionTimestamp" in before) != ("deletionTimestamp" in after))


def _deployment_view(cached: Cached) -> tuple[Any, ...]:
    meta, status = cached.obj["metadata"], cached.obj.get("status", {})
    conditions = tuple((c.get("type"), c.get("status"), c.get("reason"))
                       for c in status.get("conditions") or ())
    return (meta.get("generation"), meta.get("labels"), meta.get("ownerReferences"),
            "deletionTimestamp" in meta, cached.owners,
            tuple(status.get(k) for k in _READINESS), conditions)


def deployment_changed(old: Cached | None, new: Cached | None) -> bool:
    """A Deployment is worth a reconcile of its owner when it appeared or went away, or when
    its spec, ownership, owner, labels or readiness changed."""
    if old is None or new is None:
        return True
    return _deployment_view(old) != _deployment_view(new)


def _service_view(cached: Cached) -> tuple[Any, ...]:
    meta = cached.obj["metadata"]
    return (meta.get("labels"), meta.get("annotations"), meta.get("ownerReferences"),
            "deletionTimestamp" in meta, cached.owners, cached.obj.get("spec"))


def service_changed(old: Cached | None, new: Cached | None) -> bool:
    """A Service is worth a reconcile of its owner when it appeared or went away, or when its
    spec, ownership, owner, labels or annotations changed (not its status: a load balancer's
    address)."""
    if old is None or new is None:
        return True
    return _service_view(old) != _service_view(new)


def owner_key(child: Obj) -> ObjectKey | None:
    """The key of the AppTask that controls a child (Deployment, Service), if any."""
    ref = desired.controller_ref(child)
    if ref is None:
        return None
    return ObjectKey(child["metadata"].get("namespace", ""), ref["name"])

