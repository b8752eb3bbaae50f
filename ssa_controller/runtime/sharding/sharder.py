"""The sharder: assigns the objects of one resource to the live shards of a ring and moves them
when shards join or leave, by the labels of `labels`, as timebertt/kubernetes-controller-sharding
does it (without its webhook: a watch of the unassigned objects assigns new ones).

Every replica keeps the sharder's view warm: a watch of the ring's shard Leases (few objects)
and one of the unassigned objects (`!<shard label>`: few, and only for moments), so that the
replica that wins the leader Lease starts at once with the Leases' history, and every replica
reports how many objects wait unassigned, and for how long (the alert on it fires even when no
sharder runs). Only while leading does it write, from a work queue and its own threads:

- the ring's key (RING): after every Lease change and whenever a shard's time is up. A SUSPECT
  shard that is due (see members) is read afresh and, if still unrenewed or missing, fenced: its
  Lease written released (preconditioned on the version read), so it is DEAD from then on
  whatever a stalled watch showed. When the live set changes or a shard dies, a rebalance
  follows. Released Leases are deleted RELEASED_LEASES_KEPT lease durations later.
- the rebalance's key (REBALANCE): lists every assigned object (paged) and plans, for those
  whose shard is not the ring's owner, a drain (the shard LIVE) or a move (DEAD); also every
  `period` seconds, for whatever a failure left behind.
- an object's key: the planned action, or the assignment of an unassigned object, carried out
  by a merge patch on the version decided on (a 409 re-plans).

Every write goes through the client's write rate limit, the controller's own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ...client.kube import Kube
from ...client.resources import LEASES, ListOptions, Obj, Resource
from ...client.wire import MERGE_PATCH, ApiError, micro_time
from ..backoff import ItemBackoff
from ..leader import LeaseRecord
from ..objectkey import ObjectKey
from ..store import Cached, Writer
from ..watcher import LIST_PAGE, Watcher, WatchMetrics, start_all
from ..workqueue import QueueMetrics, WorkQueue
from .labels import Action, Move, ShardLabels
from .members import Members
from .ring import Ring

log = logging.getLogger(__name__)
RING = "ring"
REBALANCE = "rebalance"
"""The queue keys of the ring's check and of the rebalance (objects' are ObjectKeys)."""
Key = ObjectKey | str
"""A key of the sharder's queue: an object's, RING or REBALANCE."""
RELEASED_LEASES_KEPT = 4
"""A released shard Lease is deleted this many lease durations after its release (each replica
ever started names a Lease of its own): long after its objects moved."""
CHECK_EVERY = 30.0
"""The ring is checked at least this often while leading."""
WORKERS = 4


class SharderMetrics(Protocol):
    def view(self, shards: Callable[[], int], unassigned: Callable[[], int],
             oldest: Callable[[], float]) -> None:
        """Report these (live shards, unassigned objects, the longest wait) at each scrape."""

    def written(self, move: Move) -> None:
        """The sharder wrote a label."""

    def queue(self) -> QueueMetrics:
        """The metrics of the sharder's work queue."""


@dataclass(frozen=True)
class _Seen:
    """What a decision about an object depends on: its uid, version and labels."""

    uid: str
    resource_version: str
    labels: dict[str, str]

    @classmethod
    def of(cls, obj: Obj) -> _Seen:
        meta = obj["metadata"]
        return cls(str(meta.get("uid", "")), str(meta.get("resourceVersion", "")),
                   dict(meta.get("labels") or {}))


class Sharder:
    """The ring of one resource: its view on every replica, its writes while leading."""

    def __init__(self, kube: Kube, resource: Resource, labels: ShardLabels, *,
                 lease_namespace: str, ring: Mapping[str, str], lease_duration: float,
                 namespaces: Sequence[str | None], accept: Callable[[ObjectKey], bool],
                 field_manager: str, period: float, backoff: ItemBackoff[Key],
                 metrics: SharderMetrics, watch_metrics: WatchMetrics | None = None,
                 watch_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.resource = resource
        self.labels = labels
        self.lease_namespace = lease_namespace
        self.ring = dict(ring)
        """The labels of the ring's shard Leases."""
        self.namespaces = namespaces
        self.accept = accept
        self.params = {"fieldManager": field_manager}
        self.period = period
        self.metrics = metrics
        self.clock = clock
        self.wall_clock = wall_clock
        self.members = Members(lease_duration)
        self.kept = RELEASED_LEASES_KEPT * lease_duration
        """How long a released Lease stays."""
        leases, unassigned = Writer(), Writer()  # held by the watches alone
        self.leases, self.unassigned = leases.store, unassigned.store
        self._unassigned_answers = unassigned.answers
        self.queue: WorkQueue[Key] = WorkQueue(backoff, clock=clock, metrics=metrics.queue())
        self._lock = threading.Lock()
        """Guards the members, the ring, the plan and the waiting times."""
        self._ring = Ring()
        self._dead: frozenset[str] = frozenset()
        self._planned: dict[ObjectKey, _Seen] = {}
        """Objects the last rebalance found in need of a drain or a move."""
        self._waiting: dict[ObjectKey, float] = {}
        """Unassigned objects (those accepted) and when this replica first saw each."""
        self._leading = False
        self.watchers = [
            Watcher(kube, LEASES, leases, self._on_lease, namespace=lease_namespace,
                    label_selector=",".join(f"{k}={v}" for k, v in self.ring.items()),
                    watch_timeout=watch_timeout,
                    metrics=watch_metrics),
            *(Watcher(kube, resource, unassigned, self._on_unassigned, namespace=ns,
                      label_selector=labels.unassigned, watch_timeout=watch_timeout,
                      metrics=watch_metrics, cached_lists=True) for ns in namespaces)]
        metrics.view(self._live_count, self._waiting.__len__, self._oldest)

    # -- the view (every replica) ------------------------------------------------------------

    def start_watches(self, stop: threading.Event) -> list[threading.Thread]:
        return start_all(self.watchers, stop)

    def stop_watches(self) -> None:
        """Abort every open watch (their threads end since the stop event is set)."""
        for each in self.watchers:
            each.interrupt()

    @property
    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self.watchers)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(w.synced.wait(max(0.0, deadline - time.monotonic())) for w in self.watchers)

    def _on_lease(self, old: Cached | None, new: Cached | None) -> None:
        lease = (new or old).obj  # type: ignore[union-attr]
        record = None if new is None else LeaseRecord.from_lease(new.obj)
        with self._lock:
            self.members.observe(lease["metadata"]["name"], record, self.clock())
            leading = self._leading
        if leading:
            self.queue.add(RING)

    def _on_unassigned(self, old: Cached | None, new: Cached | None) -> None:
        key = ObjectKey.of((new or old).obj)  # type: ignore[union-attr]
        if not self.accept(key):
            return
        with self._lock:
            if new is None:
                self._waiting.pop(key, None)
                return
            self._waiting.setdefault(key, self.clock())
            leading = self._leading
        if leading:
            self.queue.add(key)

    def _live_count(self) -> int:
        with self._lock:
            return len(self.members.live(self.clock()))

    def _oldest(self) -> float:
        """Seconds the longest-waiting unassigned object has waited (0: none waits)."""
        with self._lock:
            first = min(self._waiting.values(), default=None)
        return 0.0 if first is None else self.clock() - first

    # -- leading -------------------------------------------------------------------------------

    def start(self) -> list[threading.Thread]:
        """Start writing (the leader Lease is held and the view synced); returns the threads."""
        with self._lock:
            self._leading = True
            waiting = list(self._waiting)
        self.queue.add(RING)
        self.queue.add(REBALANCE)
        for key in waiting:
            self.queue.add(key)
        threads = [threading.Thread(target=self._work, name=f"sharder-{i}", daemon=True)
                   for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        """Stop handing out work: writes in flight finish, nothing else starts."""
        self.queue.shut_down()

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self._process(key)
            except ApiError as exc:
                log.warning("sharder: %s: %s", key, exc)
                self.queue.add_rate_limited(key, at_least=exc.retry_after or 0.0)
            except Exception:  # noqa: BLE001 - a bug must not kill the worker
                log.exception("sharder: %s failed", key)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    def _process(self, key: Key) -> None:
        if isinstance(key, ObjectKey):
            self._place(key)
        elif key == RING:
            self._check_ring()
        else:
            self._rebalance()

    # -- the ring ----------------------------------------------------------------------------

    def _check_ring(self) -> None:
        with self._lock:
            due = self.members.due(self.clock())
        for name in due:
            self._fence(name)
        now = self.clock()
        with self._lock:
            live = self.members.live(now)
            dead = self.members.dead(now)
            changed = live != self._ring.shards
            if changed:
                self._ring = Ring(live)
            died = dead - self._dead
            self._dead = dead
            removable = self.members.removable(now, self.kept)
            waiting = list(self._waiting) if changed else []
            later = self.members.next_deadline(now, self.kept)
        if changed:
            self._ring_changed(live)
        if changed or died:
            self.queue.add(REBALANCE)
        for key in waiting:
            self.queue.add(key)
        for name in removable:
            self._remove(name)
        self.queue.add_after(RING, min(later or CHECK_EVERY, CHECK_EVERY))

    def _ring_changed(self, live: tuple[str, ...]) -> None:
        ring = self._ring
        log.info("sharding ring: %d live shards%s", len(live),
                 "".join(f"; {s} owns {ring.partitions(s)} of the hash space's partitions"
                         for s in live))

    def _fence(self, name: str) -> None:
        """Read the Lease of a shard whose time is up; if it is still unrenewed (or missing),
        write it released, so that the shard is DEAD for every sharder from now on."""
        path = LEASES.path(self.lease_namespace, name)
        try:
            lease: Obj | None = self.kube.get(path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = None
        with self._lock:
            self.members.observe(name, None if lease is None else LeaseRecord.from_lease(lease),
                                 self.clock())
            if name not in self.members.due(self.clock()):
                return  # renewed (or re-created) after all: the watch was behind
            record = self.members.record(name) or LeaseRecord()
        released = record.released(micro_time(self.wall_clock()))
        if lease is None:
            answer = self.kube.create(LEASES.path(self.lease_namespace), {
                "apiVersion": LEASES.group_version, "kind": "Lease",
                "metadata": {"name": name, "namespace": self.lease_namespace,
                             "labels": self.ring},
                "spec": released.to_spec()})
        else:
            answer = self.kube.update(path, {**lease, "spec": released.to_spec()})
        with self._lock:
            self.members.observe(name, LeaseRecord.from_lease(answer), self.clock())
        log.warning("shard %s did not renew its Lease in time: fenced (its Lease released); "
                    "its objects move to the live shards", name)

    def _remove(self, name: str) -> None:
        """Delete a released Lease, unless it changed since it was cached."""
        cached = self.leases.get(ObjectKey(self.lease_namespace, name))
        if cached is None:
            return
        version = cached["metadata"].get("resourceVersion")
        try:
            self.kube.request("DELETE", LEASES.path(self.lease_namespace, name),
                              body={"preconditions": {"resourceVersion": version}})
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
            return
        log.info("deleted the released Lease of shard %s", name)

    # -- objects -----------------------------------------------------------------------------

    def _decide(self, seen: _Seen) -> Action | None:
        """What to write on an object (lock held)."""
        now = self.clock()
        current = seen.labels.get(self.labels.shard)
        if current:
            self.members.notice(current, now)
        return self.labels.decide(seen.labels, self._ring.owner(seen.uid),
                                  lambda shard: self.members.state(shard, now))

    def _rebalance(self) -> None:
        with self._lock:
            empty = not self._ring
        if empty:
            return
        planned: dict[ObjectKey, _Seen] = {}
        for obj in self._assigned():
            key = ObjectKey.of(obj)
            if not self.accept(key):
                continue
            seen = _Seen.of(obj)
            with self._lock:
                if self._decide(seen) is not None:
                    planned[key] = seen
        with self._lock:
            self._planned = planned
            keys = list(planned)  # (other workers take planned keys while these are queued)
        if keys:
            log.info("sharding rebalance: %d objects to drain or move", len(keys))
        for key in keys:
            self.queue.add(key)
        self.queue.add_after(REBALANCE, self.period)

    def _assigned(self) -> Iterator[Obj]:
        """Every object that carries a shard label, page by page (a page at a time in memory)."""
        for namespace in self.namespaces:
            params: ListOptions = {"labelSelector": self.labels.assigned, "limit": LIST_PAGE}
            while True:
                page = self.kube.list(self.resource.path(namespace), params)
                yield from page.get("items", ())
                token = page.get("metadata", {}).get("continue")
                if not token:
                    break
                params["continue"] = token

    def _place(self, key: ObjectKey) -> None:
        """Carry out what an object needs now: the planned drain or move, or its assignment."""
        with self._lock:
            seen = self._planned.pop(key, None)
            planned = seen is not None
            if seen is None:
                cached = self.unassigned.get(key)
                seen = None if cached is None else _Seen.of(cached)
            action = None if seen is None else self._decide(seen)
        if seen is None or action is None:
            return
        try:
            answer = self.kube.patch(self.resource.path(key.namespace, key.name),
                                     self.labels.patch(action, seen.resource_version),
                                     MERGE_PATCH, self.params)
        except ApiError as exc:
            if exc.status == 404:
                return
            if planned:  # decided on a listed version: list again
                self.queue.add_rate_limited(REBALANCE)
                return
            raise
        if not planned:
            self._unassigned_answers.record_write(answer)
        self.metrics.written(action.move)
        log.debug("sharding: %s %s (%s)", action.move.value, key, action.shard)
