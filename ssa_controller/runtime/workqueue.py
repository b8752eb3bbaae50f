"""Work queue of reconcile keys: client-go's "stingy" queue plus delayed and rate-limited adds.

Watches and the resync add keys (any hashable value; the controller's are ObjectKeys); worker
threads get() a key, reconcile it and call done(). The queue guarantees what makes a controller
safe to run with several workers (see WorkQueue); delays come from an injected clock so tests
drive time by hand.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol

from .backoff import ItemBackoff, K


class QueueMetrics(Protocol):
    """Observer of queue activity; called with the queue lock held, so it must be fast."""

    def added(self) -> None:
        """A key entered the ready queue."""

    def depth(self, n: int) -> None:
        """The ready queue now holds n keys."""

    def queue_latency(self, seconds: float) -> None:
        """A key waited this long in the ready queue before a worker got it."""

    def work_duration(self, seconds: float) -> None:
        """A worker held a key this long (get() to done())."""

    def retried(self) -> None:
        """A key was re-added with backoff after a failure."""


class NoopQueueMetrics:
    """QueueMetrics that records nothing (the default)."""

    def added(self) -> None:
        pass

    def depth(self, n: int) -> None:
        pass

    def queue_latency(self, seconds: float) -> None:
        pass

    def work_duration(self, seconds: float) -> None:
        pass

    def retried(self) -> None:
        pass


class WorkQueue(Generic[K]):
    """A thread-safe, de-duplicating queue of hashable keys (client-go's "stingy" queue).

    Contract:
    - A key is never handed to two workers at once: from get() until done(key), the
      key is "processing" and no other get() returns it.
    - An add of a key that is being processed is deferred: the key becomes ready
      again only when done(key) is called, so the change is seen by a later pass.
    - Duplicates collapse: a key that is already ready (or deferred) is held once.
    - add_after(key, delay) makes the key ready once clock() >= now + delay. A key
      waits at most once; a new add_after with an earlier due time moves it earlier,
      a later one is ignored, and so is one for a key already ready or deferred.
      add(key) is add_after(key, 0): it cancels the wait.
    - add_rate_limited(key) holds a failed key back for its backoff: until then no
      add, add_after or done() makes it ready earlier (events coalesce into the one
      retry), except release(key), which ends the hold (a new desired state).
    - shut_down() refuses new adds, drops waiting keys and wakes every getter; keys
      already ready are still handed out, keys being processed finish normally and
      done() still works. get() returns None once shut down and drained.

    Ready keys are handed out in FIFO order. Delays are measured with `clock`; the
    get() timeout is measured in real time (use get(timeout=0) with a fake clock).
    """

    def __init__(
        self,
        backoff: ItemBackoff[K],
        clock: Callable[[], float] = time.monotonic,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self._clock = clock
        self._metrics: QueueMetrics = metrics if metrics is not None else NoopQueueMetrics()
        self._backoff = backoff
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()  # ready keys, FIFO
        self._dirty: set[K] = set()  # keys ready or deferred until done()
        self._processing: set[K] = set()
        self._waiting: dict[K, tuple[float, int]] = {}  # key -> (due, seq) of its live heap entry
        self._heap: list[tuple[float, int, K]] = []  # may hold stale entries, skipped on pop
        self._seq = itertools.count()
        self._enqueued_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        self._held: dict[K, float] = {}  # failed key -> clock time before which it stays waiting
        self._shutting_down = False

    # ------------------------------------------------------------------ adding

    def add(self, key: K) -> None:
        """Make `key` ready now (deferred until done() if it is being processed), or when its
        backoff hold ends."""
        with self._cond:
            if self._shutting_down:
                return
            if self._hold_of(key) is not None:
                self._wait_until(key, self._held[key])
                return
            self._waiting.pop(key, None)
            self._insert(key)

    def add_after(self, key: K, delay: float) -> None:
        """Make `key` ready after `delay` seconds of clock time, unless it is due earlier
        already."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down or key in self._dirty:
                return
            self._wait_until(key, max(self._clock() + delay, self._hold_of(key) or 0.0))

    def add_rate_limited(self, key: K, at_least: float = 0.0) -> float:
        """Hold a failed key back for its per-key backoff delay (or `at_least`, a server's
        Retry-After, if longer), then make it ready; returns that delay."""
        delay = max(at_least, self._backoff.when(key))
        self._metrics.retried()
        with self._cond:
            if self._shutting_down:
                return delay
            due = self._clock() + delay
            self._held[key] = due
            if key in self._processing:
                self._dirty.discard(key)  # an add while processing waits for the hold too
            if key not in self._dirty:
                self._waiting.pop(key, None)
                self._wait_until(key, due)
        return delay

    def release(self, key: K) -> None:
        """End the backoff hold of `key` (its failure count stays until forget())."""
        with self._cond:
            self._held.pop(key, None)

    def forget(self, key: K) -> None:
        """Reset the backoff of `key` (call after a successful reconcile, or when it is gone)."""
        self._backoff.forget(key)
        self.release(key)

    def num_requeues(self, key: K) -> int:
        """How many times `key` was re-added with backoff since it was last forgotten."""
        return self._backoff.failures(key)

    # ------------------------------------------------------------------ consuming

    def get(self, timeout: float | None = None) -> K | None:
        """The next ready key, blocking up to `timeout` seconds (None: forever).

        Returns None on timeout, or when the queue is shut down and has no ready key.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if self._queue:
                    return self._take()
                if self._shutting_down:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(_earliest(remaining, self._until_next_due()))

    def done(self, key: K) -> None:
        """Mark `key` as processed; if it was added meanwhile, it becomes ready again."""
        with self._cond:
            if key not in self._processing:
                return
            self._processing.discard(key)
            self._metrics.work_duration(self._clock() - self._started_at.pop(key))
            if key in self._dirty:
                self._enqueue(key)

    def shut_down(self) -> None:
        """Stop accepting adds, drop waiting keys and wake every blocked get()."""
        with self._cond:
            self._shutting_down = True
            self._waiting.clear()
            self._heap.clear()
            self._held.clear()
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    def __len__(self) -> int:
        """Number of ready keys (not counting waiting or deferred ones)."""
        with self._cond:
            self._promote_due()
            return len(self._queue)

    def delayed(self) -> int:
        """Number of keys waiting for their add_after delay."""
        with self._cond:
            self._promote_due()
            return len(self._waiting)

    # ------------------------------------------------------------------ internals (lock held)

    def _hold_of(self, key: K) -> float | None:
        """The end of `key`'s backoff hold, if it is still in the future."""
        due = self._held.get(key)
        if due is not None and due <= self._clock():
            del self._held[key]
            return None
        return due

    def _wait_until(self, key: K, due: float) -> None:
        """Make `key` ready at clock time `due`, unless it is due earlier already."""
        current = self._waiting.get(key)
        if current is not None and current[0] <= due:
            return
        entry = (due, next(self._seq))
        self._waiting[key] = entry
        sooner = not self._heap or due < self._heap[0][0]
        heapq.heappush(self._heap, (*entry, key))
        if sooner:  # getters wait no longer than until the earliest entry; only then recompute
            self._cond.notify_all()

    def _insert(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        self._queue.append(key)
        self._enqueued_at[key] = self._clock()
        self._metrics.added()
        self._metrics.depth(len(self._queue))
        self._cond.notify()

    def _take(self) -> K:
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        now = self._clock()
        self._started_at[key] = now
        self._metrics.depth(len(self._queue))
        self._metrics.queue_latency(now - self._enqueued_at.pop(key))
        return key

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, seq, key = heapq.heappop(self._heap)
            if self._waiting.get(key) == (due, seq):
                del self._waiting[key]
                self._insert(key)

    def _until_next_due(self) -> float | None:
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - self._clock())


def _earliest(a: float | None, b: float | None) -> float | None:
    """The smaller of two optional wait times (None means no limit)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
