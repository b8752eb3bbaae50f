"""Caches the objects of one resource in memory as plain dicts, keyed by "namespace/name".

Raw managedFields are dropped on the way in: they are most of an object's size. For
Deployments the transform keeps a compact, interned summary of who owns which field instead
(see fieldset.owners), under the cache-only key OWNERS_KEY, because ownership decisions are
made from the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import fieldset

Obj = dict[str, Any]
Change = tuple[Obj | None, Obj | None]
OWNERS_KEY = "_owners"


def key_of(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def strip(obj: Obj) -> Obj:
    """The object without metadata.managedFields."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def strip_keep_owners(obj: Obj) -> Obj:
    """The object without managedFields but with its compact ownership summary."""
    stripped = strip(obj)
    stripped[OWNERS_KEY] = fieldset.owners(obj.get("metadata", {}).get("managedFields") or ())
    return stripped


def _older(obj: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """Whether `obj` is an older version of `than`. resourceVersions are etcd revisions on
    every real server; if they do not parse as integers nothing counts as older."""
    try:
        return bool(obj["metadata"]["uid"] == than["metadata"]["uid"]
                    and int(obj["metadata"]["resourceVersion"])
                    < int(than["metadata"]["resourceVersion"]))
    except (KeyError, TypeError, ValueError):
        return False


class Store:
    """A thread-safe map of key -> object for one resource, filled by a watcher."""

    def __init__(self, transform: Callable[[Obj], Obj] = strip) -> None:
        self._transform = transform
        self._lock = threading.Lock()
        self._objects: dict[str, Obj] = {}

    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._objects.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._objects)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def put(self, obj: Obj) -> Change:
        """Store a watched object; return (old, new) as cached. An object older than the
        cached one (the controller already stored its own write's answer) is ignored."""
        new = self._transform(obj)
        key = key_of(new)
        with self._lock:
            old = self._objects.get(key)
            if old is not None and _older(new, old):
                return old, old
            self._objects[key] = new
        return old, new

    def put_if_newer(self, obj: Obj) -> None:
        """Store an object the controller got back from a write unless the cache is ahead."""
        new = self._transform(obj)
        key = key_of(new)
        with self._lock:
            old = self._objects.get(key)
            if old is None or not _older(new, old):
                self._objects[key] = new

    def delete(self, obj: Mapping[str, Any]) -> Change:
        with self._lock:
            old = self._objects.pop(key_of(obj), None)
        return old, None

    def replace(self, objs: list[Obj], namespace: str | None = None) -> list[Change]:
        """Replace everything (in `namespace`, when given) with a fresh list from a relist;
        return (old, new) for every listed object and (old, None) for every vanished one."""
        fresh = {key_of(o): o for o in map(self._transform, objs)}
        prefix = f"{namespace}/" if namespace else ""
        with self._lock:
            vanished = [o for k, o in self._objects.items()
                        if k.startswith(prefix) and k not in fresh]
            changes: list[Change] = [(self._objects.get(k), o) for k, o in fresh.items()]
            for old in vanished:
                del self._objects[key_of(old)]
            self._objects.update(fresh)
        return changes + [(old, None) for old in vanished]
