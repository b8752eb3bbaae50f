"""What the reconciler remembers about each AppTask between its reconciles: one record per
object, created and dropped in one place.

An AppTask's Memory is made when its watch shows it (new, or created again under its name with
another uid) and dropped when its watch shows it gone (`Memories.seen`, called by the
controller's AppTask event handler, and by nothing else). A reconcile only looks its memory up
(`Memories.of`), by key and uid: it never creates or re-creates one. A reconcile that finishes
after its AppTask was deleted writes into a memory nobody holds any more, which goes with it;
one of an AppTask deleted and created again under its name writes into the old uid's, never
into the new one's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .apptask.fights import FightState
from .apptask.rejections import Rejection
from .apptask.status import Sync
from .runtime.objectkey import ObjectKey


@dataclass(slots=True)
class Memory:
    """One AppTask (one uid) as the reconciler left it. Read and written by the worker that
    reconciles it (the work queue hands a key to one worker at a time); `closing` also by the
    reconcile that finds its namespace closing; `uncached` also by the AppTask watch's handler,
    right after it made the Memory of an AppTask that moved into this shard (sharding)."""

    key: ObjectKey
    uid: str
    in_sync: tuple[Any, ...] | None = None
    """The last comparison of the rendered body with the live Deployment that found them in
    sync (see reconciler._comparison)."""
    status_basis: tuple[Any, ...] | None = None
    """What the status last found current was computed from (see reconciler._status_basis):
    while it holds, the status needs no computing."""
    applied_at: float | None = None
    """When the controller applied a Deployment the Deployment controller has not yet been seen
    to observe (see apptask.settle)."""
    status_at: float | None = None
    """When the controller last wrote the status (for the status min-interval)."""
    rejection: Rejection | None = None
    """The generation the API server refused, and when to try it again."""
    fight: FightState | None = None
    """The take-back history since the controller's first apply of this generation."""
    service_in_sync: tuple[Any, ...] | None = None
    """The last comparison of the rendered Service with the live one that found them in sync."""
    service_fight: FightState | None = None
    """The take-back history of the Service since the controller's first apply of this
    generation."""
    service_rejection: Rejection | None = None
    """The generation whose Service the API server refused, and when to try it again."""
    service_sync: Sync | None = None
    """What this reconcile found wrong with the Service, reported in place of Synced (None:
    nothing)."""
    failing_since: float | None = None
    """When the current run of transient failures began."""
    vanished_at: float | None = None
    """When the Deployment the AppTask had was first found missing."""
    service_vanished_at: float | None = None
    """When the Service the AppTask had was first found missing."""
    uncached: bool = False
    """The create-only apply found a Deployment the cache does not hold: read it first."""
    closing: bool = False
    """The API server said the namespace is being terminated: skip until the deletion comes."""


class Memories:
    """The Memory of every AppTask the controller's AppTask watch shows it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memories: dict[ObjectKey, Memory] = {}

    def seen(self, key: ObjectKey, apptask: Mapping[str, Any] | None) -> None:
        """The AppTask watch shows `apptask` under `key` (None: gone). A uid not remembered yet
        gets a fresh Memory (an AppTask created again under its name starts afresh); an
        AppTask gone takes its Memory with it."""
        with self._lock:
            if apptask is None:
                self._memories.pop(key, None)
                return
            uid = _uid(apptask)
            known = self._memories.get(key)
            if known is None or known.uid != uid:
                self._memories[key] = Memory(key, uid)

    def of(self, key: ObjectKey, apptask: Mapping[str, Any]) -> Memory:
        """The Memory of `apptask` for a reconcile. While the watch has not shown that AppTask
        (or shows it gone) it is a detached one that nobody else holds: what the reconcile
        writes there goes with it."""
        uid = _uid(apptask)
        with self._lock:
            known = self._memories.get(key)
        return known if known is not None and known.uid == uid else Memory(key, uid)

    def close_namespace(self, namespace: str) -> int:
        """Mark every AppTask remembered in `namespace` as closing; returns how many."""
        with self._lock:
            members = [m for k, m in self._memories.items() if k.namespace == namespace]
        for member in members:
            member.closing = True
        return len(members)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._memories

    def __len__(self) -> int:
        with self._lock:
            return len(self._memories)


def _uid(apptask: Mapping[str, Any]) -> str:
    return str(apptask["metadata"].get("uid", ""))
