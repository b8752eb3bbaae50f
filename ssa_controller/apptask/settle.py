"""How long an AppTask's status write waits for the Deployment controller to observe an apply.

`observedGeneration` is the controller's statement that it acted on a generation; whether the
result is ready is the `Ready` condition's. After an apply that changed a Deployment's spec, the
status write waits at most `settle` seconds for the Deployment controller to observe the new
generation (its status update enqueues the AppTask again, usually within milliseconds), so that
a change it keeps up with costs one status write (current generation, readiness known), not two.
Past the wait, or at once when the wait cannot pay (the Deployment controller is seen working
through older applies more than `settle` seconds late, as under a backlog of thousands of
changes), the status says the generation was acted on and `Ready` waits for the Deployment
controller; its observation (the Deployment's watch event) brings the readiness write. Bounded
by seconds whatever the Deployment controller does. Pure; times are passed in.
"""

from __future__ import annotations

SETTLE = 2.0
"""Seconds a status write waits at most for the Deployment controller to observe an apply."""


class StatusSettle:
    """When the Deployment controller last observed one of the controller's applies, and how
    long after the apply; each object's unobserved apply is kept by the caller (its memory).
    Thread-safe: the observation is one value, replaced whole."""

    def __init__(self, settle: float = SETTLE) -> None:
        self.settle = settle
        """0 where nothing will come back to write the status later (one-pass runs)."""
        self._seen: tuple[float, float] | None = None
        """(when, how long after its apply) the Deployment controller last observed an apply."""

    def observed(self, applied_at: float, now: float) -> None:
        """The Deployment controller has observed the apply made at `applied_at`."""
        self._seen = (now, now - applied_at)

    def lagging(self, now: float) -> bool:
        """Whether the Deployment controller is seen observing applies `settle` seconds or more
        after they were made (an observation within the last `settle` seconds says so)."""
        seen = self._seen
        return seen is not None and now - seen[0] < self.settle and seen[1] >= self.settle

    def hold(self, applied_at: float, now: float) -> float:
        """Seconds to hold the status write after an apply made at `applied_at` that the
        Deployment controller has not observed yet (0: write now)."""
        waited = now - applied_at
        if waited >= self.settle or self.lagging(now):
            return 0.0
        return self.settle - waited
