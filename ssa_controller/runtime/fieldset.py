"""Field ownership as server-side apply records it: paths of an apply body and of managedFields.

A path is a tuple of fieldsV1 segments: ("f:spec", "f:replicas") or
("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}', "f:image"). The set of
paths an apply body sets is exactly the set the API server records for its manager, so the
controller can tell from its cache alone whether another manager took one of its fields.
Pure: no I/O.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

Path = tuple[str, ...]
Owners = dict[tuple[str, str], frozenset[Path]]
"""(manager, operation) -> the spec and metadata paths that manager owns."""

Location = tuple[str, ...]
"""Where a field is in an object, by name (list items are "*")."""
_POD = ("spec", "template", "spec")
_CONTAINERS = (*_POD, "containers")
_OWNER_REFERENCES: dict[Location, tuple[str, ...]] = {("metadata", "ownerReferences"): ("uid",)}
# Lists the schema merges by key (x-kubernetes-list-map-keys, or a patch merge key), by their
# location, per kind: as kube-apiserver v1.20 serves them.
LIST_KEYS: dict[str, dict[Location, tuple[str, ...]]] = {
    "Deployment": {
        **_OWNER_REFERENCES,
        _CONTAINERS: ("name",),
        (*_CONTAINERS, "*", "env"): ("name",),
        (*_CONTAINERS, "*", "ports"): ("containerPort", "protocol"),
        (*_CONTAINERS, "*", "volumeMounts"): ("mountPath",),
        (*_POD, "volumes"): ("name",),
        (*_POD, "imagePullSecrets"): ("name",),
        (*_POD, "topologySpreadConstraints"): ("topologyKey", "whenUnsatisfiable"),
    },
    "Service": {**_OWNER_REFERENCES, ("spec", "ports"): ("port", "protocol")},
}
# Structs the schema declares atomic (a LabelSelector): owned as a whole. Other atomic structs
# in the controller's bodies sit in atomic lists, owned as a whole with their list.
ATOMIC: dict[str, frozenset[Location]] = {
    "Deployment": frozenset({("spec", "selector"),
                             (*_POD, "topologySpreadConstraints", "*", "labelSelector")}),
    "Service": frozenset(),
}
OWNED_ROOTS = frozenset({"f:metadata", "f:spec"})


MISSING: Any = object()
"""What `leaves` pairs with a path the live object does not hold."""
_DUPLICATE: Any = object()


def key_segment(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """The path segment of a keyed list's item: 'k:{"name":"app"}'."""
    return "k:" + json.dumps({k: item[k] for k in keys}, separators=(",", ":"))


def _items_by_key(items: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The items of a live keyed list by their key segment (_DUPLICATE for a key that two items
    share: no item is the one at that path)."""
    found: dict[str, Any] = {}
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and all(k in item for k in keys):
            segment = key_segment(item, keys)
            found[segment] = _DUPLICATE if segment in found else item
    return found


def _child(obj: Any, name: str) -> Any:
    return obj.get(name, MISSING) if isinstance(obj, Mapping) else MISSING


def leaves(body: Mapping[str, Any], live: Any = MISSING) -> dict[Path, tuple[Any, Any]]:
    """Every leaf path an apply of `body` makes its manager own (apiVersion/kind excluded), with
    the body's value there and `live`'s (MISSING where it holds none, or where two of its list
    items share the key). One walk over the body, each live list indexed once: linear. Lists
    and structs are told apart by the schema of the body's kind (LIST_KEYS, ATOMIC; a body
    without one is a Deployment's)."""
    found: dict[Path, tuple[Any, Any]] = {}
    kind = body.get("kind", "Deployment")
    list_keys, atomic = LIST_KEYS[kind], ATOMIC[kind]

    def walk(value: Any, other: Any, segments: Path, location: tuple[str, ...]) -> None:
        if isinstance(value, Mapping) and location not in atomic:
            for name, child in value.items():  # an empty map owns nothing (v1.20.2)
                walk(child, _child(other, name), segments + (f"f:{name}",), location + (name,))
        elif isinstance(value, list) and location in list_keys:
            keys = list_keys[location]
            others = _items_by_key(other, keys)
            for item in value:
                item_segments = segments + (key_segment(item, keys),)
                live_item = others.get(item_segments[-1], MISSING)
                if live_item is _DUPLICATE:
                    live_item = MISSING
                found[item_segments + (".",)] = (item, live_item)
                for name, child in item.items():
                    walk(child, _child(live_item, name), item_segments + (f"f:{name}",),
                         location + ("*", name))
        else:
            found[segments] = (value, other)

    for name in ("metadata", "spec"):
        if name in body:
            owned = ({k: v for k, v in body[name].items() if k not in ("name", "namespace")}
                     if name == "metadata" else body[name])
            walk(owned, _child(live, name), (f"f:{name}",), (name,))
    return found


def body_paths(body: Mapping[str, Any]) -> frozenset[Path]:
    """Every leaf path an apply of `body` makes its manager own (apiVersion/kind excluded)."""
    return frozenset(leaves(body))


def extract(live: Mapping[str, Any], paths: Iterable[Path]) -> dict[str, Any]:
    """An apply body holding the live object's values at `paths` (a path to a struct copies it
    whole), as client-go's managedfields.ExtractInto makes one from a manager's fields: applied,
    it changes no value. Paths the live object does not hold are left out."""
    meta = live["metadata"]
    body: dict[str, Any] = {"apiVersion": live["apiVersion"], "kind": live["kind"],
                            "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
    for path in sorted(paths):
        _copy(live, body, path)
    return body


def _item(items: Any, segment: str) -> Any:
    """The one item of a live list a 'k:' segment names, or MISSING."""
    key = json.loads(segment[2:])
    found = [item for item in items if isinstance(item, Mapping)
             and all(item.get(k) == v for k, v in key.items())] \
        if isinstance(items, list) else []
    return found[0] if len(found) == 1 else MISSING


def value_at(obj: Any, path: Path) -> Any:
    """The value at a fieldsV1 path of an object (MISSING where it holds none)."""
    for segment in path:
        if segment == ".":
            break
        obj = _item(obj, segment) if segment.startswith("k:") else _child(obj, segment[2:])
        if obj is MISSING:
            break
    return obj


def _copy(live: Any, target: Any, path: Path) -> None:
    """Copy the value at `path` in `live` into `target`, making its parents (a list item with
    its key fields) on the way; nothing when `live` does not hold it."""
    for i, segment in enumerate(path):
        last = i == len(path) - 1
        if segment == ".":
            return
        if segment.startswith("k:"):
            live = _item(live, segment)
            if live is MISSING:
                return
            key = json.loads(segment[2:])
            made = next((item for item in target if all(item.get(k) == v
                                                         for k, v in key.items())), None)
            if made is None:
                made = copy.deepcopy(live) if last else dict(key)
                target.append(made)
            target = made
            continue
        name = segment[2:]
        if not isinstance(live, Mapping) or name not in live:
            return
        live = live[name]
        if last:
            target[name] = copy.deepcopy(live)
        else:
            following = path[i + 1]
            target = target.setdefault(name, [] if following.startswith("k:") else {})


def flatten(fields: Mapping[str, Any], prefix: Path = ()) -> Iterable[Path]:
    """The leaf paths of a fieldsV1 tree ("." marks ownership of a list item itself)."""
    for segment, child in fields.items():
        path = prefix + (sys.intern(segment),)
        if child:
            yield from flatten(child, path)
        else:
            yield path


def to_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """The fieldsV1 tree of a set of leaf paths (the inverse of flatten)."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for segment in path:
            node = node.setdefault(segment, {})
    return tree


_SHAPES_LIMIT = 4096
_shapes: dict[str, frozenset[Path]] = {}
"""fieldsV1 trees (as JSON text) -> their paths. Objects a controller renders share a few
shapes (values are not part of fieldsV1), so their summaries share one frozenset: flattened
once, stored once, compared by identity. An object's owner references are no part of a shape
(see _paths)."""
_REFERENCES = "f:ownerReferences"


def _shape(fields: Mapping[str, Any]) -> frozenset[Path]:
    text = json.dumps(fields, separators=(",", ":"))
    paths = _shapes.get(text)
    if paths is None:
        paths = frozenset(flatten(fields))
        if len(_shapes) >= _SHAPES_LIMIT:
            _shapes.clear()
        _shapes[text] = paths
    return paths


def _paths(fields: Mapping[str, Any]) -> frozenset[Path]:
    """The paths of a fieldsV1 tree. Owner references are keyed by their uid, which no two
    owners share: with them, every object controlled by its own owner would be a shape of its
    own, cached with its JSON text, and none of its paths would be shared. So the shape is
    looked up without them and their few paths are added: the other paths' tuples are the
    shape's, stored once for every object of that shape."""
    meta = fields.get("f:metadata")
    if not isinstance(meta, Mapping) or not meta.get(_REFERENCES):
        return _shape(fields)
    rest = {k: v for k, v in fields.items() if k != "f:metadata"}
    other_meta = {k: v for k, v in meta.items() if k != _REFERENCES}
    if other_meta:
        rest["f:metadata"] = other_meta
    owned = frozenset(flatten(meta[_REFERENCES], ("f:metadata", _REFERENCES)))
    return _shape(rest) | owned if rest else owned


def owners(managed_fields: Iterable[Mapping[str, Any]], like: Owners | None = None) -> Owners:
    """A compact (manager, operation) -> paths summary of metadata.managedFields. Paths equal to
    those of the same entry in `like` (the summary of an earlier version of the object) are
    taken from it as they are: a manager's paths stay one frozenset, compared by identity, while
    other managers change other fields (the Deployment controller its status)."""
    result: dict[tuple[str, str], frozenset[Path]] = {}
    for entry in managed_fields:
        fields = {k: v for k, v in (entry.get("fieldsV1") or {}).items() if k in OWNED_ROOTS}
        if fields:
            key = (str(entry.get("manager", "")), str(entry.get("operation", "")))
            paths = _paths(fields)
            result[key] = result[key] | paths if key in result else paths
    if like:
        for key, paths in result.items():
            earlier = like.get(key)
            if earlier is not None and earlier is not paths and earlier == paths:
                result[key] = earlier
    return result


def applied_by(summary: Owners, manager: str) -> frozenset[Path]:
    """The paths `manager` owns through server-side apply."""
    return summary.get((manager, "Apply"), frozenset())


def taken_by_others(summary: Owners, manager: str,
                    lost: Iterable[Path]) -> dict[str, list[Path]]:
    """Which other managers now own the given paths: manager name -> sorted paths."""
    lost = set(lost)
    result: dict[str, set[Path]] = {}
    for (name, operation), paths in summary.items():
        if (name, operation) != (manager, "Apply") and lost & paths:
            result.setdefault(name, set()).update(lost & paths)
    return {name: sorted(paths) for name, paths in result.items()}


def display(path: Path) -> str:
    """A path as the API server prints it in conflicts:
    .spec.template.spec.containers[name="app"].image."""
    out = ""
    for segment in path:
        if segment.startswith("f:"):
            out += "." + segment[2:]
        elif segment.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}"
                                  for k, v in json.loads(segment[2:]).items()) + "]"
    return out
