"""The plan of a dry run: what the controller would change, as RFC 6902 JSON Patches. Pure.

The patch goes from the live Deployment to the API server's dry-run answer, both without server
bookkeeping (managedFields, resourceVersion, generation, uid, timestamps) and status, so that
only real changes show; defaulting and quantity canonicalisation were done by the server on
both sides and never appear as a change. A plan is shown with its env values masked unless
asked otherwise (`shown`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jsonpatch

from . import redact

BOOKKEEPING = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
               "selfLink")


class Action(StrEnum):
    """What a dry run found the controller would do with one AppTask (or why it would not)."""

    CREATED = "created"
    CONFIGURED = "configured"
    DELETED = "deleted"
    """The AppTask's Service, whose spec no longer asks for one."""
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    INVALID = "invalid"
    ERROR = "error"
    PAUSED = "paused"
    """spec.paused: nothing is applied; `Plan.unpaused` says what would be once unpaused."""
    SKIPPED = "skipped"
    """Nothing to compare now: the AppTask, its namespace or its Deployment is being deleted."""


DIFFERS = frozenset({Action.CREATED, Action.CONFIGURED, Action.DELETED, Action.CONFLICT,
                     Action.INVALID})
"""Verdicts of a child that differs from its spec or cannot be brought to it."""


@dataclass(frozen=True)
class Plan:
    """What a dry run found for one AppTask."""

    key: str
    action: Action
    patch: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""
    unpaused: Action | None = None
    """For a paused AppTask: the verdict once it is unpaused (the patch and detail are that
    verdict's)."""

    @property
    def changes(self) -> bool:
        return self.action in (Action.CREATED, Action.CONFIGURED, Action.DELETED)

    @property
    def verdict(self) -> Action:
        """What the plan says of the Deployment: a paused AppTask's by its unpaused verdict."""
        return self.unpaused or self.action

    def paused(self) -> Plan:
        """This plan as that of a paused AppTask: what would be done once it is unpaused."""
        return Plan(self.key, Action.PAUSED, self.patch, self.detail, unpaused=self.action)

    def shown(self, values: bool) -> Plan:
        """The plan as printed and logged: env values masked unless `values`."""
        return self if values else dataclasses.replace(self, patch=redact.env_values(self.patch))

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action, "whenUnpaused": self.unpaused,
                "patch": self.patch, "detail": self.detail}


def comparable(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """An object without status and server bookkeeping."""
    if obj is None:
        return {}
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in BOOKKEEPING}
    return {**{k: v for k, v in obj.items() if k != "status"},
            "metadata": meta}


def plan(key: str, live: Mapping[str, Any] | None, result: Mapping[str, Any]) -> Plan:
    """The plan for one dry-run apply: `live` (None if absent) -> the server's `result`. The
    live object may come from a list, whose items carry no apiVersion and kind: it has the
    result's."""
    after = comparable(result)
    if live is None:
        return Plan(key, Action.CREATED, jsonpatch.make_patch({}, after).patch)
    before = {"apiVersion": result.get("apiVersion"), "kind": result.get("kind"),
              **comparable(live)}
    ops = jsonpatch.make_patch(before, after).patch
    return Plan(key, Action.CONFIGURED if ops else Action.UNCHANGED, ops)


def render_op(op: Mapping[str, Any]) -> str:
    """One operation of a plan's patch as a person reads it: `replace /spec/replicas 3`."""
    value = f" {json.dumps(op['value'], sort_keys=True)}" if "value" in op else ""
    return f"{op['op']} {op['path']}{value}"


def headline(p: Plan) -> str:
    """`ns/name: verdict (detail)`; a paused AppTask's with its verdict once unpaused."""
    why = f"when unpaused: {p.unpaused}" if p.unpaused else ""
    if p.detail:
        why = f"{why}: {p.detail}" if why else p.detail
    return f"{p.key}: {p.action}" + (f" ({why})" if why else "")


def render_text(plans: list[Plan]) -> str:
    """A human-readable plan, one block per AppTask."""
    lines = []
    for p in sorted(plans, key=lambda p: p.key):
        lines.append(headline(p))
        lines.extend(f"    {render_op(op)}" for op in p.patch)
    return "\n".join(lines)
