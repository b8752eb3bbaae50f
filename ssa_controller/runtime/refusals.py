"""Whether the API server still takes the controller's credentials, as its answers tell: for
/readyz. A run of 401 answers that has lasted `timeouts.request` (no other answer since the
first) makes the process unready, so that a rotated-away token or a revoked certificate shows on
the probe and in a rollout, not only in the log; any other answer ends the run (a request that
got no answer tells nothing). Pure: statuses and a clock in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

UNAUTHORIZED = 401


class CredentialRefusals:
    """Tracks the current run of 401 answers. Thread-safe."""

    def __init__(self, lasting: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lasting = lasting
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        """When the current run of 401 answers began (None: the last answer was another)."""

    def observe(self, status: int) -> None:
        """One request's status (0: no answer)."""
        with self._lock:
            if status == UNAUTHORIZED:
                if self._since is None:
                    self._since = self._clock()
            elif status:
                self._since = None

    def accepted(self) -> bool:
        """The readiness check: False once the refusals have lasted `lasting` seconds."""
        with self._lock:
            since = self._since
        return since is None or self._clock() - since < self._lasting
