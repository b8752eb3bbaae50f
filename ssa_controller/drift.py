"""Drift: where a live Deployment no longer holds what the controller applied. Pure, no I/O.

Two signals, both read from the cache: a field whose live value differs from the apply body
(quantities compared by value, so "1000m" equals "1"), and a field the controller's manager no
longer owns. The first catches writers that managedFields does not record (on v1.20 the scale
subresource); the second names the manager that took the field. Also how fields and values are
said in messages (`restored .spec.replicas (5 -> 2), changed by kubectl-edit`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import fieldset, quantity
from .fieldset import Path

_MISSING = object()


@functools.lru_cache(maxsize=4096)
def _item_keys(segment: str) -> dict[str, Any]:
    """The key fields of a list item segment 'k:{...}' (parsed once; do not mutate)."""
    keys: dict[str, Any] = json.loads(segment[2:])
    return keys


def value_at(obj: Any, path: Path) -> Any:
    """The value at a fieldsV1 path in a plain object, or _MISSING."""
    current = obj
    for segment in path:
        if segment == ".":
            continue
        if segment.startswith("f:"):
            if not isinstance(current, Mapping) or segment[2:] not in current:
                return _MISSING
            current = current[segment[2:]]
        elif segment.startswith("k:"):
            keys = _item_keys(segment)
            matches = [item for item in current or () if isinstance(item, Mapping)
                       and all(item.get(k) == v for k, v in keys.items())]
            if len(matches) != 1:
                return _MISSING
            current = matches[0]
    return current


def _is_quantity_path(path: Path) -> bool:
    return len(path) >= 2 and path[-2] in ("f:requests", "f:limits") and "f:resources" in path


def _same(path: Path, wanted: Any, live: Any) -> bool:
    if live is _MISSING:
        return False
    if _is_quantity_path(path):
        return quantity.stored(wanted) == quantity.stored(live)
    if path and path[-1] == ".":
        return True
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
    wanted = fieldset.body_paths(body)
    changed = tuple(sorted(p for p in wanted if not _same(p, value_at(body, p),
                                                         value_at(live, p))))
    return Drift(changed=changed, lost=tuple(sorted(wanted - owned)),
                 stale=tuple(sorted(owned - wanted)))


VALUE_LIMIT = 60
"""Characters of a value shown in a message; longer ones are cut with '...'."""
HIDDEN = "value not shown"
"""Said instead of the values of an environment variable, which may be a secret."""


def shown(value: Any) -> str:
    """A value for a message: strings bare, anything else as compact JSON, `absent`; cut at
    VALUE_LIMIT characters."""
    if value is _MISSING:
        return "absent"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                             sort_keys=True)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT - 3] + "..."


def _secret(path: Path) -> bool:
    return "f:env" in path


def fields_text(obj: Mapping[str, Any], paths: Iterable[Path]) -> str:
    """`.spec.replicas (2), ...`: the fields with their values in `obj`."""
    return ", ".join(f"{fieldset.display(p)} ({HIDDEN if _secret(p) else shown(value_at(obj, p))})"
                     for p in sorted(paths))


def restored(taken: Iterable[Path], body: Mapping[str, Any], live: Mapping[str, Any],
             takers: Mapping[str, Sequence[Path]], unknown: str) -> str:
    """What an apply that takes fields back restores, from what to what, and who had changed
    them (`takers`: manager -> paths, as fieldset.taken_by_others; `unknown` where managedFields
    names nobody): `restored .spec.replicas (5 -> 2), changed by kubectl-scale; ...`."""
    owners: dict[Path, list[str]] = {}
    for manager, paths in sorted(takers.items()):
        for path in paths:
            owners.setdefault(path, []).append(manager)
    groups: dict[str, list[str]] = {}
    for path in sorted(taken):
        before, after = value_at(live, path), value_at(body, path)
        change = (HIDDEN if _secret(path) else shown(after) if _same(path, after, before)
                  else f"{shown(before)} -> {shown(after)}")
        who = " and ".join(owners.get(path, ())) or unknown
        groups.setdefault(who, []).append(f"{fieldset.display(path)} ({change})")
    return "restored " + "; ".join(f"{', '.join(fields)}, changed by {who}"
                                   for who, fields in groups.items())
