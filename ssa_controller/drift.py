"""Drift: where a live Deployment no longer holds what the controller applied. Pure, no I/O.

Two signals, both read from the cache: a field whose live value differs from the apply body
(quantities compared by value, so "1000m" equals "1"), and a field the controller's manager no
longer owns. The first catches writers that managedFields does not record (on v1.20 the scale
subresource); the second names the manager that took the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import fieldset, quantity
from .fieldset import Path


def _is_quantity_path(path: Path) -> bool:
    return len(path) >= 2 and path[-2] in ("f:requests", "f:limits") and "f:resources" in path


def _same(path: Path, wanted: Any, live: Any) -> bool:
    if live is fieldset.MISSING:
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
    pairs = fieldset.leaves(body, live)
    wanted = frozenset(pairs)
    changed = tuple(sorted(p for p, (value, found) in pairs.items()
                           if not _same(p, value, found)))
    return Drift(changed=changed, lost=tuple(sorted(wanted - owned)),
                 stale=tuple(sorted(owned - wanted)))
