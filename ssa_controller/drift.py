"""Drift: where a live Deployment no longer holds what the controller applied. Pure, no I/O.

Two signals, both read from the cache: a field whose live value differs from the apply body
(quantities compared by value, so "1000m" equals "1"), and a field the controller's manager no
longer owns. The first catches writers that managedFields does not record (on v1.20 the scale
subresource); the second names the manager that took the field.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Any

from . import fieldset
from .fieldset import Path

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_MISSING = object()


def parse_quantity(value: str | int | float) -> Decimal | None:
    """The numeric value of a Kubernetes quantity ("500m", "1Gi", "1e3"), or None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix not in _SUFFIX:  # an exponent ("1e3"); "E" and "Ei" are suffixes
            return Decimal(number + suffix)
        return Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation:
        return None


_MAX_QUANTITY = Decimal(2**63 - 1)
_MILLI = Decimal("0.001")


def stored_quantity(value: str | int | float) -> Decimal | None:
    """The value the API server stores for a resource quantity, or None if invalid: parsing caps
    it at 2^63-1, and defaulting rounds every ResourceList value up to milli precision ("1n" is
    stored as "1m", "999Ei" as "9223372036854775807"). Comparing unrounded values would see a
    difference after every apply, and re-apply for ever."""
    number = parse_quantity(value)
    if number is None:
        return None
    number = max(-_MAX_QUANTITY, min(_MAX_QUANTITY, number))
    return number.quantize(_MILLI, rounding=ROUND_UP)


@functools.lru_cache(maxsize=4096)
def _item_keys(segment: str) -> dict[str, Any]:
    """The key fields of a list item segment 'k:{...}' (parsed once; do not mutate)."""
    return json.loads(segment[2:])


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
        return stored_quantity(wanted) == stored_quantity(live)
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
