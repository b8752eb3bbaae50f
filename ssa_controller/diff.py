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
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    INVALID = "invalid"
    ERROR = "error"


@dataclass(frozen=True)
class Plan:
    """What a dry run found for one AppTask."""

    key: str
    action: Action
    patch: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    @property
    def changes(self) -> bool:
        return self.action in (Action.CREATED, Action.CONFIGURED)

    def shown(self, values: bool) -> Plan:
        """The plan as printed and logged: env values masked unless `values`."""
        return self if values else dataclasses.replace(self, patch=redact.env_values(self.patch))

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action, "patch": self.patch,
                "detail": self.detail}


def comparable(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """An object without status and server bookkeeping."""
    if obj is None:
        return {}
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in BOOKKEEPING}
    return {**{k: v for k, v in obj.items() if k != "status"},
            "metadata": meta}


def plan(key: str, live: Mapping[str, Any] | None, result: Mapping[str, Any]) -> Plan:
    """The plan for one dry-run apply: `live` (None if absent) -> the server's `result`."""
    before, after = comparable(live), comparable(result)
    ops = jsonpatch.make_patch(before, after).patch
    if live is None:
        return Plan(key, Action.CREATED, ops)
    return Plan(key, Action.CONFIGURED if ops else Action.UNCHANGED, ops)


def render_text(plans: list[Plan]) -> str:
    """A human-readable plan, one block per AppTask."""
    lines = []
    for p in sorted(plans, key=lambda p: p.key):
        lines.append(f"{p.key}: {p.action}" + (f" ({p.detail})" if p.detail else ""))
        for op in p.patch:
            value = f" {json.dumps(op['value'], sort_keys=True)}" if "value" in op else ""
            lines.append(f"    {op['op']} {op['path']}{value}")
    return "\n".join(lines)
