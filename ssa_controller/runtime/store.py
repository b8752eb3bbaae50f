"""Caches the objects of one resource in memory as plain dicts, keyed by ObjectKey.

Who writes what (kube-rs' reflector split: a Writer and its read-only Store):
- The watch is the only writer of the *watched* state: it alone holds the cache's `Writer`
  (`put`, `delete`, `replace`). Every change it reports is relative to the version it last
  delivered, so no watch event is ever hidden, whatever the controller wrote meanwhile.
- Event handlers, gauges and reconciles read the cache through its `Store`, a read-only view.
- A reconcile changes the cache in one way only: it records the answers of its own writes
  (`WriteAnswers.record_write`). An answer only makes `get` return the newest known version
  ("read your writes") until the watch delivers that version or a newer one; it never changes
  what the watch reports, and is dropped then. An answer only moves a key forward from what the
  watch has shown: one that arrives after the watch showed the object deleted, and is not newer
  than that deletion, is not recorded (the store remembers the revision of the last
  DELETED_MEMORY deletions), so a write that raced a deletion never brings the object back.

Each version is held as a `Cached` record: the object without its raw managedFields (most of
its size) and with its strings shared (see compact), and beside it, in a store made
`with_owners` (Deployments), a compact, interned summary of who owns which field (see
fieldset.owners), because ownership decisions are made from the cache. The summary never enters
the object, so readers of the object need not know of it; `get` returns the object, `cached`
the record, and changes are reported as records.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from sys import intern
from typing import Any

from . import fieldset
from .objectkey import ObjectKey

Obj = dict[str, Any]
SHARED_STRING_MAX = 64
"""Strings up to this length are interned in the cache (see compact)."""
DELETED_MEMORY = 4096
"""Deleted keys remembered with the revision of their deletion, newest first (see
record_write). A write answer that raced a deletion arrives within one request timeout of it,
long before 4096 later deletions push its key out, on any but a cluster deleting more than a
hundred objects of the resource a second."""


def _shared(value: Any, like: Any = None) -> Any:
    """`value` with its keys and short strings interned, and every part equal to the same part
    of `like` (an earlier compacted version) taken from `like` as it is. Equal as Python values:
    1 == 1.0 == True, but a field's schema fixes its JSON type, so they do not meet."""
    kind = type(value)
    if kind is dict:
        if type(like) is not dict:
            return {intern(k): _shared(v) for k, v in value.items()}
        if value == like:
            return like
        return {intern(k): _shared(v, like.get(k)) for k, v in value.items()}
    if kind is list:
        if type(like) is not list or len(like) != len(value):
            return [_shared(v) for v in value]
        if value == like:
            return like
        return [_shared(v, w) for v, w in zip(value, like, strict=True)]
    if kind is str and len(value) <= SHARED_STRING_MAX:
        return intern(value)
    return value


def compact(obj: Obj, like: Obj | None = None) -> Obj:
    """The object as the cache holds it: without metadata.managedFields, and with every key and
    short string interned. The JSON decoder shares equal strings only within one document, and
    thousands of cached objects spell the same keys and mostly the same values (the API
    server's defaults, labels, image names): shared, the cache takes a third less memory.
    `like`, the compacted version before, lends every part that did not change (a Deployment's
    status update leaves its spec and most of its metadata alone): comparing costs less than
    interning again."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    shared: Obj = _shared({**obj, "metadata": meta}, like)
    return shared


@dataclass(frozen=True)
class Cached:
    """One cached version of an object: the object without managedFields, and beside it the
    summary of who owns which of its fields (empty where the store keeps none)."""

    obj: Obj
    owners: fieldset.Owners = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Obj, with_owners: bool, like: Cached | None = None) -> Cached:
        """The cached form of an object as the API server sent it (`like`: its record before,
        see compact and fieldset.owners)."""
        managed = obj.get("metadata", {}).get("managedFields") or ()
        owners = fieldset.owners(managed, None if like is None else like.owners) \
            if with_owners else {}
        return cls(compact(obj, None if like is None else like.obj), owners)


Change = tuple[Cached | None, Cached | None]


def _revision(obj: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as an etcd revision (None if it is not one)."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def newer(obj: Mapping[str, Any], than: Mapping[str, Any] | None) -> bool:
    """Whether `obj` was written after `than`. resourceVersions are etcd revisions, global to
    the whole store, on every real server; if one does not parse, nothing counts as newer."""
    return than is None or _after(obj, _revision(than))


def _after(obj: Mapping[str, Any], revision: int | None) -> bool:
    """Whether `obj` was written after etcd revision `revision` (False if either is unknown)."""
    mine = _revision(obj)
    return mine is not None and revision is not None and mine > revision


class Store:
    """A thread-safe map of key -> Cached for one resource: a watcher's view plus the
    answers of the controller's own writes that the watch has not delivered yet. Read-only:
    its Writer and its WriteAnswers change it."""

    def __init__(self, with_owners: bool) -> None:
        self._with_owners = with_owners
        self._lock = threading.Lock()
        self._watched: dict[ObjectKey, Cached] = {}
        # Write answers newer than the watched version of their key; each entry is removed as
        # soon as the watch delivers that version or a newer one, or the object goes away.
        self._written: dict[ObjectKey, Cached] = {}
        # The revision at which the watch (or a relist) last showed each deleted key gone.
        self._deleted: OrderedDict[ObjectKey, int] = OrderedDict()

    def cached(self, key: ObjectKey) -> Cached | None:
        """The newest known version with its owners: a recorded write answer ahead of the
        watch, else the watched one."""
        with self._lock:
            return self._written.get(key) or self._watched.get(key)

    def get(self, key: ObjectKey) -> Obj | None:
        """The newest known version of the object (see cached)."""
        record = self.cached(key)
        return None if record is None else record.obj

    def keys(self) -> list[ObjectKey]:
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

    def record(self, obj: Obj) -> Cached:
        """The cached form of an object as the API server sent it, sharing what did not change
        with the version known before; nothing is stored."""
        return Cached.of(obj, self._with_owners, self.cached(ObjectKey.of(obj)))

    # -- the watcher's writes (through its Writer) ----------------------------------------------

    def _put(self, obj: Obj) -> Change:
        new = self.record(obj)
        key = ObjectKey.of(obj)
        with self._lock:
            old = self._watched.get(key)
            self._watched[key] = new
            self._deleted.pop(key, None)
            self._catch_up(key, new.obj)
        return old, new

    def _delete(self, obj: Mapping[str, Any]) -> Change:
        key = ObjectKey.of(obj)
        with self._lock:
            old = self._watched.pop(key, None)
            self._written.pop(key, None)
            self._bury(key, obj)
        return old, None

    def _replace(self, records: Iterable[Cached], resource_version: str,
                 namespace: str | None) -> list[Change]:
        fresh = {ObjectKey.of(r.obj): r for r in records}
        listed_at = {"metadata": {"resourceVersion": resource_version}}
        with self._lock:
            vanished = [o for k, o in self._watched.items()
                        if namespace in (None, k.namespace) and k not in fresh]
            changes: list[Change] = [(self._watched.get(k), o) for k, o in fresh.items()]
            for old in vanished:
                del self._watched[ObjectKey.of(old.obj)]
                self._bury(ObjectKey.of(old.obj), listed_at)
            self._watched.update(fresh)
            for key in fresh:
                self._deleted.pop(key, None)
            for key in [k for k in self._written if namespace in (None, k.namespace)]:
                listed = fresh.get(key)
                self._catch_up(key, listed_at if listed is None else listed.obj)
        return changes + [(old, None) for old in vanished]

    # -- the reconciler's writes (through WriteAnswers) -----------------------------------------

    def _record_write(self, obj: Obj) -> Cached:
        new = self.record(obj)
        key = ObjectKey.of(obj)
        with self._lock:
            known = self._written.get(key) or self._watched.get(key)
            if known is not None:
                take = newer(obj, known.obj)
            else:
                deleted = self._deleted.get(key)
                take = deleted is None or _after(obj, deleted)
            if take:
                self._written[key] = new
        return new

    def _bury(self, key: ObjectKey, seen: Mapping[str, Any]) -> None:
        """Remember (lock held) that the watch showed `key` gone as of `seen`'s revision."""
        revision = _revision(seen)
        if revision is None:
            return
        self._deleted[key] = revision
        self._deleted.move_to_end(key)
        if len(self._deleted) > DELETED_MEMORY:
            self._deleted.popitem(last=False)

    def _catch_up(self, key: ObjectKey, seen: Mapping[str, Any]) -> None:
        """Drop the write answer of `key` once `seen` (lock held) is as new as it."""
        written = self._written.get(key)
        if written is not None and not newer(written.obj, seen):
            del self._written[key]


class Writer:
    """The writer of one resource's cache, held by its watch alone (kube-rs' reflector Writer);
    `store` is its read-only view, `answers` the reconcilers' one way to change it."""

    def __init__(self, with_owners: bool = False) -> None:
        self.store = Store(with_owners)
        self.answers = WriteAnswers(self.store)

    def put(self, obj: Obj) -> Change:
        """Store a watched object; return (old, new) as last delivered by the watch."""
        return self.store._put(obj)

    def delete(self, obj: Mapping[str, Any]) -> Change:
        """Drop a watched object (`obj`: as the DELETED event brings it, at the revision of its
        deletion); return (old, None)."""
        return self.store._delete(obj)

    def record(self, obj: Obj) -> Cached:
        """The cached form of a listed object, for `replace` (see Store.record)."""
        return self.store.record(obj)

    def replace(self, records: Iterable[Cached], resource_version: str,
                namespace: str | None = None) -> list[Change]:
        """Replace everything (in `namespace`, when given) with a fresh list (of `record`s)
        taken at `resource_version`; return (old, new) for every listed object and (old, None)
        for every vanished one. A write answer newer than the list is kept. The caller makes
        records page by page, so that a large list is never held twice, raw and cached."""
        return self.store._replace(records, resource_version, namespace)


class WriteAnswers:
    """The one change a reconcile makes to a cache: the answers of its own writes."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record_write(self, obj: Obj) -> Cached:
        """Remember the answer of the controller's own write until the watch delivers it,
        unless the watch has shown a newer version, or the object deleted since; return its
        record."""
        return self._store._record_write(obj)
