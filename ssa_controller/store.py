"""Caches the objects of one resource in memory as plain dicts, keyed by "namespace/name".

Who writes what:
- The watcher is the only writer of the *watched* state (`put`, `delete`, `replace`). Every
  change it reports is relative to the version it last delivered, so no watch event is ever
  hidden, whatever the controller wrote meanwhile.
- The reconciler records the answers of its own writes (`record_write`). An answer only makes
  `get` return the newest known version ("read your writes") until the watch delivers that
  version or a newer one; it never changes what the watch reports, and is dropped then.

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


def _revision(obj: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as an etcd revision (None if it is not one)."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def newer(obj: Mapping[str, Any], than: Mapping[str, Any] | None) -> bool:
    """Whether `obj` was written after `than`. resourceVersions are etcd revisions, global to
    the whole store, on every real server; if one does not parse, nothing counts as newer."""
    if than is None:
        return True
    mine, theirs = _revision(obj), _revision(than)
    return mine is not None and theirs is not None and mine > theirs


class Store:
    """A thread-safe map of key -> object for one resource: a watcher's view plus the
    answers of the controller's own writes that the watch has not delivered yet."""

    def __init__(self, transform: Callable[[Obj], Obj] = strip) -> None:
        self._transform = transform
        self._lock = threading.Lock()
        self._watched: dict[str, Obj] = {}
        # Write answers newer than the watched version of their key; each entry is removed as
        # soon as the watch delivers that version or a newer one, or the object goes away.
        self._written: dict[str, Obj] = {}

    def get(self, key: str) -> Obj | None:
        """The newest known version: a recorded write answer ahead of the watch, else the
        watched object."""
        with self._lock:
            return self._written.get(key) or self._watched.get(key)

    def keys(self) -> list[str]:
        """The keys of the watched objects."""
        with self._lock:
            return list(self._watched)

    def __len__(self) -> int:
        with self._lock:
            return len(self._watched)

    def pending_writes(self) -> int:
        """How many write answers the watch has not delivered yet."""
        with self._lock:
            return len(self._written)

    # -- the watcher's writes -----------------------------------------------------------------

    def put(self, obj: Obj) -> Change:
        """Store a watched object; return (old, new) as last delivered by the watch."""
        new = self._transform(obj)
        key = key_of(new)
        with self._lock:
            old = self._watched.get(key)
            self._watched[key] = new
            self._catch_up(key, new)
        return old, new

    def delete(self, obj: Mapping[str, Any]) -> Change:
        key = key_of(obj)
        with self._lock:
            old = self._watched.pop(key, None)
            self._written.pop(key, None)
        return old, None

    def replace(self, objs: list[Obj], resource_version: str,
                namespace: str | None = None) -> list[Change]:
        """Replace everything (in `namespace`, when given) with a fresh list taken at
        `resource_version`; return (old, new) for every listed object and (old, None) for
        every vanished one. A write answer newer than the list is kept."""
        fresh = {key_of(o): o for o in map(self._transform, objs)}
        listed_at = {"metadata": {"resourceVersion": resource_version}}
        prefix = f"{namespace}/" if namespace else ""
        with self._lock:
            vanished = [o for k, o in self._watched.items()
                        if k.startswith(prefix) and k not in fresh]
            changes: list[Change] = [(self._watched.get(k), o) for k, o in fresh.items()]
            for old in vanished:
                del self._watched[key_of(old)]
            self._watched.update(fresh)
            for key in [k for k in self._written if k.startswith(prefix)]:
                self._catch_up(key, fresh.get(key, listed_at))
        return changes + [(old, None) for old in vanished]

    # -- the reconciler's writes --------------------------------------------------------------

    def record_write(self, obj: Obj) -> None:
        """Remember the answer of the controller's own write until the watch delivers it."""
        new = self._transform(obj)
        key = key_of(new)
        with self._lock:
            if newer(new, self._written.get(key) or self._watched.get(key)):
                self._written[key] = new

    def _catch_up(self, key: str, seen: Mapping[str, Any]) -> None:
        """Drop the write answer of `key` once `seen` (lock held) is as new as it."""
        written = self._written.get(key)
        if written is not None and not newer(written, seen):
            del self._written[key]
