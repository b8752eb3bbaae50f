"""Rate limiting primitives: per-key capped exponential backoff and a token bucket.

ItemBackoff decides how long a failing key waits before its next retry (the work
queue's add_rate_limited uses it); TokenBucket bounds the overall rate of API
writes (or of Events per object). Both are pure and thread-safe, take plain numbers
(not the configuration), and an injected clock / sleep / random source so that tests
run instantly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def exponential(base: float, factor: float, cap: float, failures: int) -> float:
    """min(cap, base * factor**failures): the one capped exponential backoff formula."""
    try:
        return min(cap, base * factor**failures)
    except OverflowError:
        return cap


class ItemBackoff(Generic[K]):
    """Per-key exponential backoff: min(cap, base * factor**failures), jittered.

    The jitter scales the delay by a random factor in (1 - jitter, 1]: it only ever
    shortens the delay, so `cap` is a hard upper bound. Each when(key) counts one more
    failure for that key; forget(key) resets it (call it on success, and when a key
    disappears, or its counter stays in memory).
    """

    def __init__(
        self,
        base: float,
        factor: float,
        cap: float,
        jitter: float,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or factor < 1 or cap < base or not 0 <= jitter <= 1:
            raise ValueError(
                f"invalid backoff: need base > 0, factor >= 1, cap >= base, 0 <= jitter <= 1 "
                f"(base={base}, factor={factor}, cap={cap}, jitter={jitter})"
            )
        self._base = base
        self._factor = factor
        self._cap = cap
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._failures: dict[K, int] = {}
        self._lock = threading.Lock()

    def when(self, key: K) -> float:
        """The delay before the next retry of `key`; counts one more failure for it."""
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        return self.jittered(failures)

    def jittered(self, failures: int) -> float:
        """The delay after `failures` previous failures, jittered (for a caller that counts
        the failures itself)."""
        with self._lock:
            scale = 1.0 - self._jitter * self._rng.random()
        return self.delay(failures) * scale

    def delay(self, failures: int) -> float:
        """The un-jittered delay after `failures` previous failures."""
        return exponential(self._base, self._factor, self._cap, failures)

    def forget(self, key: K) -> None:
        """Reset the failure count of `key` (after a success, or when the key is gone)."""
        with self._lock:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)


class TokenBucket:
    """Token bucket of `burst` tokens refilled at `qps`, starting full.

    Like golang.org/x/time/rate reservations: reserve() always takes a token, even on
    credit (the balance may go negative), and returns how long the caller must wait
    before acting. Concurrent callers therefore queue up fairly instead of racing,
    and over any window of t seconds at most qps * t + burst callers proceed.
    """

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("invalid token bucket: need qps > 0 and burst >= 1 "
                             f"(qps={qps}, burst={burst})")
        self._qps = float(qps)
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self._burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token now; returns the seconds the caller must wait before using it."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def try_take(self, tokens: float = 1.0) -> bool:
        """Take `tokens` only if they are available right now."""
        with self._lock:
            self._refill()
            if self._tokens < tokens:
                return False
            self._tokens -= tokens
            return True

    def wait(self) -> float:
        """Reserve a token and sleep until it may be used; returns the time slept."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._tokens = min(self._burst, self._tokens + elapsed * self._qps)
        self._last = now
