"""Computes an AppTask's status from the outcome of a reconcile and its Deployment. Pure, no I/O.

Conditions are shaped like metav1.Condition and keyed by type. A condition keeps its
lastTransitionTime while its status stays the same, and nothing in the status changes from one
pass to the next unless something observed changed: equal inputs give an equal status, so the
controller can skip the write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..runtime.events import truncate_note
from . import desired

MESSAGE_LIMIT = 32768
"""Bytes of a condition message (metav1.Condition's limit, the CRD's maxLength): a longer one,
such as a 422 listing hundreds of invalid fields, would make every status patch fail."""


class Phase(StrEnum):
    """status.phase of an AppTask (the CRD's printer column)."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    INVALID = "Invalid"
    CONFLICT = "Conflict"
    PAUSED = "Paused"


@dataclass(frozen=True, slots=True)
class Sync:
    """How the controller's last attempt to apply the Deployment went (each AppTask's memory
    keeps the last one its status was found current for: slots, no __dict__)."""

    ok: bool
    reason: str
    message: str
    phase: Phase | None = None
    """A phase that overrides the one derived from the Deployment (Invalid, Conflict, Degraded)."""
    conflict: bool = False
    """Whether this is a conflict over fields with another manager."""

    @classmethod
    def synced(cls, name: str, service: bool = False) -> Sync:
        """Both children match the spec (`service`: the spec has a Service)."""
        if service:
            return cls(True, "Synced", f"Deployment {name} and Service {name} match the spec")
        return cls(True, "Synced", f"Deployment {name} matches the spec")

    @classmethod
    def paused(cls, in_sync: bool) -> Sync:
        """spec.paused: nothing is applied; Synced says whether the Deployment matches the spec
        all the same."""
        message = "spec.paused is true: the Deployment is left as it is"
        if not in_sync:
            message += "; it does not match the spec"
        return cls(in_sync, "Paused", message, phase=Phase.PAUSED)

    @classmethod
    def invalid(cls, message: str) -> Sync:
        return cls(False, "InvalidSpec", message, phase=Phase.INVALID)

    @classmethod
    def rejected(cls, message: str) -> Sync:
        return cls(False, "ApplyRejected", message, phase=Phase.INVALID)

    @classmethod
    def conflicted(cls, reason: str, message: str) -> Sync:
        return cls(False, reason, message, phase=Phase.CONFLICT, conflict=True)

    @classmethod
    def failed(cls, message: str) -> Sync:
        return cls(False, "ApplyFailed", message, phase=Phase.DEGRADED)


def controls(apptask: Mapping[str, Any], child: Mapping[str, Any]) -> bool:
    """Whether the child's (Deployment's, Service's) controller ownerReference names this
    AppTask (by uid)."""
    ref = desired.controller_ref(child)
    return ref is not None and ref.get("uid") == apptask["metadata"].get("uid")


def _ready(apptask: Mapping[str, Any],
           deployment: Mapping[str, Any] | None) -> tuple[bool, str, str, int]:
    """(ready, reason, message, readyReplicas) from the status of the Deployment the AppTask
    controls; someone else's Deployment of the same name says nothing about the AppTask."""
    if deployment is None:
        return False, "DeploymentNotFound", "the Deployment does not exist yet", 0
    if not controls(apptask, deployment):
        return (False, "DeploymentNotControlled", f"Deployment {deployment['metadata']['name']} "
                "is not controlled by this AppTask", 0)
    spec, st = deployment.get("spec", {}), deployment.get("status", {})
    desired = int(spec.get("replicas", 1))
    ready = int(st.get("readyReplicas", 0))
    generation = int(deployment["metadata"].get("generation", 0))
    observed = int(st.get("observedGeneration", 0))
    if observed < generation:  # what it says is about an earlier spec (as kubectl rollout status)
        return (False, "DeploymentProgressing", f"waiting for the Deployment controller to "
                f"observe generation {generation} (observed: {observed})", ready)
    for cond in st.get("conditions") or ():
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True" \
                or cond.get("type") == "Progressing" and cond.get("status") == "False":
            return False, str(cond.get("reason", cond["type"])), str(cond.get("message", "")), ready
    updated, available = int(st.get("updatedReplicas", 0)), int(st.get("availableReplicas", 0))
    total = int(st.get("replicas", 0))
    if updated >= desired and available >= desired and total == updated:
        return True, "DeploymentReady", f"{ready}/{desired} replicas ready", ready
    message = f"{ready}/{desired} replicas ready, {updated} updated"
    return False, "DeploymentProgressing", message, ready


def _phase(sync: Sync, deployment: Mapping[str, Any] | None, ready: bool, reason: str) -> Phase:
    if sync.phase:
        return sync.phase
    if deployment is None:
        return Phase.PENDING
    if ready:
        return Phase.READY
    return Phase.PROGRESSING if reason == "DeploymentProgressing" else Phase.DEGRADED


def _condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason,
            "message": truncate_note(message, MESSAGE_LIMIT), "observedGeneration": generation}


def merge_conditions(old: Sequence[Mapping[str, Any]], new: Sequence[dict[str, Any]],
                     now: str) -> list[dict[str, Any]]:
    """`new` with lastTransitionTime kept from `old` wherever a condition's status is unchanged."""
    previous = {c.get("type"): c for c in old}
    merged = []
    for cond in new:
        before = previous.get(cond["type"]) or {}
        kept = before.get("lastTransitionTime") if before.get("status") == cond["status"] else None
        merged.append({**cond, "lastTransitionTime": kept or now})
    return merged


def compute(apptask: Mapping[str, Any], deployment: Mapping[str, Any] | None, sync: Sync,
            now: str, service: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The status the AppTask should have (`service`: its Service, if any); `now` stamps
    conditions whose status changed."""
    generation = int(apptask["metadata"].get("generation", 0))
    ready, reason, message, ready_replicas = _ready(apptask, deployment)
    conditions = [
        _condition("Ready", ready, reason, message, generation),
        _condition("Synced", sync.ok, sync.reason, sync.message, generation),
        _condition("Conflict", sync.conflict, sync.reason if sync.conflict else "NoConflict",
                   sync.message if sync.conflict else "no other manager contests the fields",
                   generation),
    ]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": _phase(sync, deployment, ready, reason),
        "readyReplicas": ready_replicas,
        "conditions": merge_conditions(apptask.get("status", {}).get("conditions") or (),
                                       conditions, now),
    }
    if deployment is not None and controls(apptask, deployment):
        status["deploymentName"] = deployment["metadata"]["name"]
    if service is not None and controls(apptask, service):
        status["serviceName"] = service["metadata"]["name"]
    return status


def progress_only(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Whether `wanted` differs from `current` only in progress: the same observedGeneration,
    phase, Deployment and condition statuses and reasons; readyReplicas or messages moved."""
    if not current:
        return False
    if any(current.get(k) != wanted.get(k)
           for k in ("observedGeneration", "phase", "deploymentName", "serviceName")):
        return False

    def marks(st: Mapping[str, Any]) -> dict[Any, tuple[Any, Any]]:
        return {c.get("type"): (c.get("status"), c.get("reason"))
                for c in st.get("conditions") or ()}

    return marks(current) == marks(wanted)


def patch_for(
    current: Mapping[str, Any] | None, wanted: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A JSON merge patch turning status `current` into `wanted`, or None when they are equal."""
    current = current or {}
    if dict(current) == dict(wanted):
        return None
    return {"status": {**{k: None for k in current if k not in wanted}, **wanted}}

