"""Drift: where a live Deployment no longer holds what the controller applied. Pure, no I/O.

Two signals, both read from the cache: a field whose live value differs from the apply body
(quantities compared by value, so "1000m" equals "1"), and a field the controller's manager no
longer owns. The first catches writers that managedFields does not record (on v1.20 the scale
subresource); the second names the manager that took the field. Also how fields and values are
said in messages (`restored .spec.replicas (5 -> 2), changed by kubectl-edit`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..runtime import fieldset
from ..runtime.fieldset import Path
from . import quantity

QUANTITY_FIELDS = frozenset({"f:sizeLimit", "f:divisor"})
"""Fields holding a quantity, besides the amounts of resources' requests and limits."""


def _is_quantity_path(path: Path) -> bool:
    return bool(path) and path[-1] in QUANTITY_FIELDS or len(path) >= 2 and \
        path[-2] in ("f:requests", "f:limits") and "f:resources" in path


def _zero(value: Any) -> bool:
    """Whether `value` is what the API server leaves out of an object it returns (omitempty:
    false, 0, "", empty lists and maps): set so, a field is owned but never seen."""
    return value in (None, "", [], {}) or type(value) in (bool, int) and value == 0


def _same(path: Path, wanted: Any, live: Any) -> bool:
    """Whether the live value holds what the body set at `path`. Values the server fills in
    (defaults in an atomic list's items or struct) and zero values it leaves out are no
    difference; quantities compare by the value the server stores ("1000m" is "1")."""
    if live is fieldset.MISSING:
        return bool(path) and path[-1] != "." and _zero(wanted)
    if _is_quantity_path(path):
        return quantity.stored(wanted) == quantity.stored(live)
    if path and path[-1] == ".":
        return True
    if isinstance(wanted, Mapping) and isinstance(live, Mapping):
        return all(_same(path + (f"f:{name}",), value, live.get(name, fieldset.MISSING))
                   for name, value in wanted.items())
    if isinstance(wanted, list) and isinstance(live, list):
        return len(wanted) == len(live) and all(
            _same(path, w, v) for w, v in zip(wanted, live, strict=True))
    return bool(wanted == live)


@dataclass(frozen=True)
class Drift:
    """What differs between the apply body and the live object, per fieldsV1 path."""

    changed: tuple[Path, ...]
    """Paths the body sets whose live value differs (or is missing)."""
    lost: tuple[Path, ...]
    """Paths the body sets that the controller's manager no longer owns."""
    stale: tuple[Path, ...]
    """Paths the manager still owns that the body no longer sets (to be removed by apply)."""

    def __bool__(self) -> bool:
        return bool(self.changed or self.lost or self.stale)

    @property
    def taken(self) -> tuple[Path, ...]:
        """Paths another writer took: changed value or lost ownership."""
        return tuple(sorted(set(self.changed) | set(self.lost)))


def compute(body: Mapping[str, Any], live: Mapping[str, Any], owned: frozenset[Path]) -> Drift:
    """Compare an apply body with the live object and the paths the manager owns in it."""
    pairs = fieldset.leaves(body, live)
    wanted = frozenset(pairs)
    changed = tuple(sorted(p for p, (value, found) in pairs.items()
                           if not _same(p, value, found)))
    return Drift(changed=changed, lost=tuple(sorted(wanted - owned)),
                 stale=tuple(sorted(owned - wanted)))


def by_others(found: Drift, own: Iterable[Path]) -> Drift:
    """`found` without the changed values at `own` paths the manager still owns: those the
    controller changes itself beyond the spec (the shard label, when an AppTask moved between
    shards), no other writer's doing. Another manager owning one of them is still a take-back."""
    mine = frozenset(own) - frozenset(found.lost)
    return replace(found, changed=tuple(p for p in found.changed if p not in mine))


VALUE_LIMIT = 60
"""Characters of a value shown in a message; longer ones are cut with '...'."""
HIDDEN = "value not shown"
"""Said instead of the values of an environment variable, which may be a secret."""


def shown(value: Any) -> str:
    """A value for a message: strings bare, anything else as compact JSON, `absent`; cut at
    VALUE_LIMIT characters."""
    if value is fieldset.MISSING:
        return "absent"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                             sort_keys=True)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT - 3] + "..."


def _secret(path: Path) -> bool:
    return "f:env" in path


def fields_text(body: Mapping[str, Any]) -> str:
    """`.spec.replicas (2), ...`: the fields an apply of `body` sets, with their values."""
    return ", ".join(f"{fieldset.display(p)} ({HIDDEN if _secret(p) else shown(value)})"
                     for p, (value, _) in sorted(fieldset.leaves(body).items()))


def restored(taken: Iterable[Path], body: Mapping[str, Any], live: Mapping[str, Any],
             takers: Mapping[str, Sequence[Path]], unknown: str) -> str:
    """What an apply that takes fields back restores, from what to what, and who had changed
    them (`takers`: manager -> paths, as fieldset.taken_by_others; `unknown` where managedFields
    names nobody): `restored .spec.replicas (5 -> 2), changed by kubectl-scale; ...`."""
    owners: dict[Path, list[str]] = {}
    for manager, paths in sorted(takers.items()):
        for path in paths:
            owners.setdefault(path, []).append(manager)
    pairs = fieldset.leaves(body, live)
    groups: dict[str, list[str]] = {}
    for path in sorted(taken):
        after, before = pairs.get(path, (fieldset.MISSING, fieldset.MISSING))
        change = (HIDDEN if _secret(path) else shown(after) if _same(path, after, before)
                  else f"{shown(before)} -> {shown(after)}")
        who = " and ".join(owners.get(path, ())) or unknown
        groups.setdefault(who, []).append(f"{fieldset.display(path)} ({change})")
    return "restored " + "; ".join(f"{', '.join(fields)}, changed by {who}"
                                   for who, fields in groups.items())
