"""Unions the spec switches: members of the live Deployment the body's choice excludes. Pure.

A volume's source, a probe's handler, an env var's value or valueFrom (and valueFrom's
source), and the strategy's rollingUpdate (only with type RollingUpdate) are unions: the API
server refuses an object holding two members. Server-side apply on v1.20 removes what the
manager releases, leaf by leaf, and a struct once its last leaf is gone; but not a struct it
never owned a leaf of (defaulted: rollingUpdate's maxUnavailable, a probe's httpGet path and
scheme, fieldRef's apiVersion, a Secret volume's defaultMode). So before an apply that switches
members, the controller first applies what it owns with those members' live values (a
`takeover`: no value changes, it only comes to own them), and the apply then releases them
whole. A member another manager owns part of is left alone (the apply then reports the server's
refusal); an empty struct (an `emptyDir: {}` switched for another source under the same volume
name) has no leaf to own, and stays refused.

A probe the spec stops setting is no union, but released leaf by leaf it would stay, empty,
and be defaulted ("must specify a handler type"): it is removed whole by a JSON patch first
(`removal`), which gives no manager a field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..runtime import fieldset
from ..runtime.fieldset import Path
from . import fields

Excluded = Callable[[Mapping[str, Any]], frozenset[str]]
"""The members of a union a struct of the body excludes."""


def _one_of(*members: str) -> Excluded:
    def excluded(chosen: Mapping[str, Any]) -> frozenset[str]:
        picked = {m for m in members if m in chosen}
        return frozenset(members) - picked if picked else frozenset()
    return excluded


def _strategy(chosen: Mapping[str, Any]) -> frozenset[str]:
    return frozenset({"rollingUpdate"}) if chosen.get("type") == "Recreate" else frozenset()


_CONTAINER = ("spec", "template", "spec", "containers", "*")
_PROBE = _one_of("httpGet", "tcpSocket", "exec")
UNIONS: dict[tuple[str, ...], Excluded] = {
    ("spec", "strategy"): _strategy,
    ("spec", "template", "spec", "volumes", "*"): _one_of(*fields.VOLUME_SOURCES),
    (*_CONTAINER, "livenessProbe"): _PROBE,
    (*_CONTAINER, "readinessProbe"): _PROBE,
    (*_CONTAINER, "startupProbe"): _PROBE,
    (*_CONTAINER, "env", "*"): _one_of("value", "valueFrom"),
    (*_CONTAINER, "env", "*", "valueFrom"): _one_of("secretKeyRef", "configMapKeyRef",
                                                     "fieldRef", "resourceFieldRef"),
}
"""Where the Deployment has unions, by location ("*" for list items)."""
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
RELEASED_WHOLE: dict[tuple[str, ...], tuple[str, ...]] = {_CONTAINER: PROBES}
"""Structs that, released leaf by leaf, the server keeps empty and then defaults into an
invalid one: removed whole instead when the body stops setting them."""


def _structs(value: Any, location: tuple[str, ...], path: Path,
             list_keys: Mapping[tuple[str, ...], tuple[str, ...]]
             ) -> Iterator[tuple[tuple[str, ...], Path, Mapping[str, Any]]]:
    """(location, fieldsV1 path, struct) of every struct of a body under `location`."""
    if isinstance(value, Mapping):
        yield location, path, value
        for name, child in value.items():
            yield from _structs(child, (*location, name), (*path, f"f:{name}"), list_keys)
    elif isinstance(value, list) and location in list_keys:
        keys = list_keys[location]
        for item in value:
            segment = fieldset.key_segment(item, keys)
            yield from _structs(item, (*location, "*"), (*path, segment), list_keys)


def _held(body: Mapping[str, Any], live: Mapping[str, Any], table: Mapping[tuple[str, ...], Any]
          ) -> Iterator[tuple[tuple[str, ...], Path, Mapping[str, Any], Mapping[str, Any]]]:
    """(location, path, the body's struct, the live one) where `table` has the location."""
    list_keys = fieldset.LIST_KEYS[body["kind"]]
    for location, path, chosen in _structs(body.get("spec"), ("spec",), ("f:spec",), list_keys):
        held = fieldset.value_at(live, path)
        if location in table and isinstance(held, Mapping):
            yield location, path, chosen, held


def leftovers(body: Mapping[str, Any], live: Mapping[str, Any]) -> list[Path]:
    """The paths of the live members of unions that the body's choices exclude."""
    return [(*path, f"f:{member}") for location, path, chosen, held in _held(body, live, UNIONS)
            for member in sorted(UNIONS[location](chosen))
            if held.get(member) not in (None, {}, "")]


def _pointer(live: Mapping[str, Any], path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The JSON pointer of a fieldsV1 path in `live`, and the `test` operations that hold
    each list item it passes through to its key."""
    pointer, tests, node = "", [], live
    for segment in path:
        if segment.startswith("k:"):
            item = fieldset.value_at(node, (segment,))
            index = node.index(item)  # type: ignore[attr-defined]
            pointer += f"/{index}"
            tests += [{"op": "test", "path": f"{pointer}/{name}", "value": value}
                      for name, value in json.loads(segment[2:]).items()]
            node = item
        else:
            pointer += "/" + segment[2:].replace("~", "~0").replace("/", "~1")
            node = node[segment[2:]]
    return pointer, tests


def removal(body: Mapping[str, Any], live: Mapping[str, Any], owners: fieldset.Owners,
            manager: str) -> list[dict[str, Any]] | None:
    """The JSON patch that removes the RELEASED_WHOLE structs the body no longer sets, that
    `manager` owns a leaf under and no other manager owns any of (a removal gives no
    manager a field, and takes the removed paths off every manager's entry), guarded by the
    resourceVersion and the keys of the list items on the way; None when there are none."""
    ours = fieldset.applied_by(owners, manager)
    others = {p for (name, operation), paths in owners.items()
              if (name, operation) != (manager, "Apply") for p in paths}
    operations: list[dict[str, Any]] = []
    for location, path, chosen, held in _held(body, live, RELEASED_WHOLE):
        for member in RELEASED_WHOLE[location]:
            whole = (*path, f"f:{member}")
            if member not in chosen and held.get(member) and _under(whole, ours) \
                    and not _under(whole, others):
                pointer, tests = _pointer(live, whole)
                operations += [*tests, {"op": "remove", "path": pointer}]
    if not operations:
        return None
    version = {"op": "test", "path": "/metadata/resourceVersion",
               "value": live["metadata"]["resourceVersion"]}
    return [version, *operations]


def _under(path: Path, paths: Iterable[Path]) -> bool:
    """Whether any of `paths` lies under `path`."""
    return any(p[:len(path)] == path for p in paths)


def takeover(body: Mapping[str, Any], live: Mapping[str, Any], owners: fieldset.Owners,
             manager: str) -> dict[str, Any] | None:
    """The apply body with which `manager` comes to own, at their live values, the members
    the body excludes (with everything it owns already); None when there are none it does not
    own whole already, or when another manager owns part of each."""
    ours = fieldset.applied_by(owners, manager)
    others = {p for (name, operation), paths in owners.items()
              if (name, operation) != (manager, "Apply") for p in paths}
    taken = [p for p in leftovers(body, live)
             if not _under(p, others)
             and not fieldset.body_paths(fieldset.extract(live, [p])) <= ours]
    return fieldset.extract(live, ours | set(taken)) if taken else None
