"""Measurement: every figure comes from the API server (its audit log, or objects read from it)
or from /proc, never from a controller's log lines.

- `Window`: a measuring period; the audit events of one identity in one namespace since it began,
  at times relative to its start.
- `Sampler`: a background thread calling a function every `interval` seconds, keeping
  (time, value) points: /proc usage of a process, a Deployment's generation.
- small statistics: per-interval rates, a least-squares slope.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from ssa_controller.envtest.audit import AuditEvent, AuditLog

Point = tuple[float, float]


class Window:
    """A period of measurement: `audit` None means the target has no audit log."""

    def __init__(self, audit: AuditLog | None) -> None:
        self.audit = audit
        self.mark = audit.mark() if audit is not None else 0
        self.started = datetime.now(UTC)
        self.monotonic = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.monotonic

    def at(self, event: AuditEvent) -> float:
        """Seconds from the window's start to when the server received the request."""
        return (event.received - self.started).total_seconds()

    def events(self, user: str | None, namespace: str | None = None,
               **filters: Any) -> list[AuditEvent] | None:
        """Finished requests of `user` since the start (None: not measurable here)."""
        if self.audit is None or user is None:
            return None
        return self.audit.select(self.mark, user=user, namespace=namespace, **filters)


def writes(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    return [e for e in events if e.is_write]


def rates(times: Sequence[float], width: float, end: float) -> list[Point]:
    """Requests per second in consecutive buckets of `width` seconds from 0 to `end`."""
    buckets = [0] * max(1, int(end / width + 0.999))
    for t in times:
        if 0 <= t < end:
            buckets[min(int(t / width), len(buckets) - 1)] += 1
    return [(i * width, n / width) for i, n in enumerate(buckets)]


def slope(points: Sequence[Point]) -> float:
    """The least-squares slope of y over x (0 with fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


class Sampler:
    """Calls `probe` every `interval` seconds from a thread; keeps (seconds since start, value)
    for every call that returned a number (None or an exception: no point)."""

    def __init__(self, probe: Callable[[], float | None], interval: float = 0.25) -> None:
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self.points: list[Point] = []
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lab-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = self._probe()
            except Exception:  # noqa: BLE001 - a failed sample is a missing point
                value = None
            if value is not None:
                self.points.append((time.monotonic() - self._started, float(value)))
            self._stop.wait(self._interval)
