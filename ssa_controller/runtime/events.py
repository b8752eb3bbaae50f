"""Kubernetes Events (events.k8s.io/v1) about AppTasks: what a person should see.

`EventRecorder.record()` never blocks and never raises for API failures: it applies a
per-object token bucket (like client-go's spam filter, so a hot loop cannot flood Events)
and puts the event on a bounded queue that one daemon thread posts. An identical event
(same object, type, reason, action and note) within SERIES_WINDOW of the first becomes a
merge patch of that Event's `series` (count, lastObservedTime) instead of a new Event.
`EventCorrelator` holds that pure bookkeeping, driven by an injected clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..client.kube import Kube
from ..client.resources import EVENTS, Obj
from ..client.wire import MERGE_PATCH, ApiError, micro_time
from .backoff import TokenBucket

log = logging.getLogger(__name__)

EVENT_TYPES = frozenset({"Normal", "Warning"})
NOTE_LIMIT = 1024
"""Bytes; the API server rejects longer notes."""
SERIES_WINDOW = 600.0
"""Seconds after an Event's creation during which repeats are counted in its series."""
CACHE_SIZE = 4096
"""Objects (rate limiters) and distinct events (series) remembered, least recently used out."""
NAME_LIMIT = 253


class EventMetrics(Protocol):
    def event_emitted(self, type_: str, reason: str) -> None: ...

    def event_dropped(self) -> None: ...


@dataclass(frozen=True)
class PendingEvent:
    """An event as recorded, waiting to be posted."""

    regarding: Obj
    type: str
    reason: str
    action: str
    note: str
    observed: float
    """Monotonic clock reading at record()."""
    wall: str
    """MicroTime at record()."""

    @property
    def key(self) -> tuple[str, ...]:
        """What makes two events identical (the same Event, counted in its series)."""
        return (_object_key(self.regarding), self.type, self.reason, self.action, self.note)


@dataclass
class Series:
    """A posted Event and how often it has been seen since `first_seen`."""

    namespace: str
    name: str
    first_seen: float
    count: int = 1


def _object_key(regarding: Mapping[str, Any]) -> str:
    return regarding.get("uid") or f"{regarding.get('namespace')}/{regarding.get('name')}"


def object_reference(obj: Mapping[str, Any]) -> Obj:
    """The `regarding` reference to an object dict (an AppTask as read from the API)."""
    meta = obj.get("metadata") or {}
    ref = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
           "name": meta.get("name"), "namespace": meta.get("namespace"),
           "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v}


def truncate_note(note: str, limit: int = NOTE_LIMIT) -> str:
    """`note` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    encoded = note.encode()
    if len(encoded) <= limit:
        return note
    return encoded[:limit].decode("utf-8", "ignore")


def event_name(object_name: str, nanos: int) -> str:
    """`<object name>.<16 hex digits>`, kept within the 253 characters of a name."""
    suffix = f".{nanos:016x}"
    return object_name[:NAME_LIMIT - len(suffix)] + suffix


class EventCorrelator:
    """Pure bookkeeping: per-object rate limits and the series of identical events."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 window: float = SERIES_WINDOW, cache_size: int = CACHE_SIZE) -> None:
        self._qps = qps
        self._burst = burst
        self._clock = clock
        self._window = window
        self._cache_size = cache_size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._series: OrderedDict[tuple[str, ...], Series] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, regarding: Mapping[str, Any]) -> bool:
        """Take a token from the object's bucket; False means drop the event (spam)."""
        key = _object_key(regarding)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = TokenBucket(self._qps, self._burst, clock=self._clock)
                self._buckets[key] = bucket
            self._buckets.move_to_end(key)
            _trim(self._buckets, self._cache_size)
        return bucket.try_take()

    def repeat_of(self, event: PendingEvent) -> Series | None:
        """The live series `event` repeats, its count bumped; None if it must be a new Event."""
        with self._lock:
            series = self._series.get(event.key)
            if series is None:
                return None
            if event.observed - series.first_seen >= self._window:
                del self._series[event.key]
                return None
            series.count += 1
            self._series.move_to_end(event.key)
            return series

    def posted(self, event: PendingEvent, namespace: str, name: str) -> None:
        """A new Event was created for `event`: later repeats join its series."""
        with self._lock:
            self._series[event.key] = Series(namespace, name, event.observed)
            _trim(self._series, self._cache_size)

    def forget(self, event: PendingEvent) -> None:
        with self._lock:
            self._series.pop(event.key, None)


def _trim(cache: OrderedDict[Any, Any], size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)


class EventRecorder:
    """Records Events about objects without ever blocking or failing the caller."""

    def __init__(self, kube: Kube, *, controller: str = "example.com/ssa-controller",
                 instance: str, qps: float, burst: int, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic, queue_size: int = 1000,
                 metrics: EventMetrics | None = None,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 nanos: Callable[[], int] = time.time_ns) -> None:
        self._kube = kube
        self.controller = controller
        self.instance = instance[:128]
        self.enabled = enabled
        self._clock = clock
        self._wall_clock = wall_clock
        self._nanos = nanos
        self._metrics = metrics
        self._correlator = EventCorrelator(qps, burst, clock)
        self._queue: deque[PendingEvent] = deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._closed = False
        self._abandon = False
        self._thread: threading.Thread | None = None

    def record(self, regarding: Mapping[str, Any], type_: str, reason: str, action: str,
               note: str) -> None:
        """Queue an Event about the object dict `regarding`; drops it if rate-limited or full."""
        if not self.enabled:
            return
        if type_ not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {sorted(EVENT_TYPES)}, got {type_!r}")
        ref = object_reference(regarding)
        if not self._correlator.allow(ref):
            self._dropped("rate limited", ref, reason)
            return
        event = PendingEvent(ref, type_, reason, action, truncate_note(note), self._clock(),
                             micro_time(self._wall_clock()))
        with self._cond:
            if self._closed or len(self._queue) >= self._queue_size:
                self._dropped("queue full" if not self._closed else "recorder stopped", ref,
                              reason)
                return
            self._queue.append(event)
            self._cond.notify()

    def start(self) -> None:
        """Start the daemon thread that posts queued events (no-op when disabled)."""
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="event-recorder",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new events, post what is queued within `timeout` seconds, drop the rest."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            self._abandon = True
            left = len(self._queue)
            self._queue.clear()
        for _ in range(left):
            self._count_dropped()
        if left:
            log.warning("dropped %d queued events at shutdown", left)

    def _drain(self) -> None:
        while (event := self._next()) is not None:
            try:
                self._post(event)
            except ApiError as exc:
                log.warning("failed to post event %s for %s: %s", event.reason,
                            _object_key(event.regarding), exc)
            except Exception:  # noqa: BLE001 - the recorder thread must survive anything
                log.exception("failed to post event %s", event.reason)

    def _next(self) -> PendingEvent | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._abandon or not self._queue:
                return None
            return self._queue.popleft()

    def _post(self, event: PendingEvent) -> None:
        series = self._correlator.repeat_of(event)
        if series is not None:
            try:
                self._patch_series(series, event)
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self._correlator.forget(event)
        self._create(event)

    def _create(self, event: PendingEvent) -> None:
        namespace = event.regarding.get("namespace") or "default"
        name = event_name(event.regarding.get("name") or "object", self._nanos())
        body = {"apiVersion": EVENTS.group_version, "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "eventTime": event.wall, "reportingController": self.controller,
                "reportingInstance": self.instance, "action": event.action,
                "reason": event.reason, "note": event.note, "type": event.type,
                "regarding": event.regarding}
        self._kube.create(EVENTS.path(namespace), body)
        self._correlator.posted(event, namespace, name)
        self._emitted(event)

    def _patch_series(self, series: Series, event: PendingEvent) -> None:
        patch = {"series": {"count": series.count, "lastObservedTime": event.wall}}
        self._kube.patch(EVENTS.path(series.namespace, series.name), patch, MERGE_PATCH)
        self._emitted(event)

    def _emitted(self, event: PendingEvent) -> None:
        if self._metrics is not None:
            self._metrics.event_emitted(event.type, event.reason)

    def _dropped(self, why: str, ref: Obj, reason: str) -> None:
        log.debug("dropped event %s for %s: %s", reason, _object_key(ref), why)
        self._count_dropped()

    def _count_dropped(self) -> None:
        if self._metrics is not None:
            self._metrics.event_dropped()
