"""Polling with a deadline: the one way tests and the envtest tools wait for the cluster.

Nothing in the tests sleeps for a fixed time; they poll a condition until it holds or a deadline
passes, and a timeout reports what was last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class PollTimeout(AssertionError, TimeoutError):
    """A polled condition did not hold in time (both an AssertionError and a TimeoutError)."""


def poll_until(
    fn: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition not met",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `fn` until it returns a truthy value and return that value.

    Exceptions of the types in `ignore` count as a falsy result. Raises PollTimeout naming
    `message` and the last value (or exception) seen once `timeout` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: object = fn()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise PollTimeout(f"{message} (after {timeout:g}s; last value: {last!r})")
        time.sleep(interval)
