"""How long an AppTask's status write waits for the Deployment controller to observe an apply.

After an apply that changed a Deployment's spec, the status is written once the Deployment
controller has observed the new generation (its status update enqueues the AppTask again,
usually within milliseconds): one status write per change instead of two (progressing, then
ready). The wait is bounded, so that a status shows the new generation soon after its apply
even when no Deployment controller runs: `settle` seconds, stretched up to `settle_max` only
while the Deployment controller is seen working through the controller's applies (it observed
one within the last `settle` seconds), as under a burst of thousands of changes, where it falls
behind by tens of seconds but is alive. Behind by more than that, it works through the applies
in about the order they were made: its lag (how long after its apply it observed the last one)
says whether it has reached this apply yet. Until it has, with a margin, the status waits on,
up to `backlog_max`; past it, the status is written. Such a wait is not polled every `settle`
seconds (thousands of keys wait at once): the observation enqueues the AppTask anyway (its
Deployment's watch event), so the hold runs until the apply is due; a Deployment controller
that stops meanwhile is noticed then. Pure; times are passed in.
"""

from __future__ import annotations

SETTLE = 2.0
"""Seconds a status write waits for the Deployment controller when it shows no progress."""
SETTLE_MAX = 30.0
"""Seconds a status write waits while the Deployment controller shows progress."""
BACKLOG_MAX = 300.0
"""Seconds a status write waits at most while the Deployment controller, showing progress, has
not reached its apply yet."""
LAG_MARGIN = 0.25
"""The share of the Deployment controller's lag added to it: it runs several workers and
retries, so its order is only about that of the applies."""


class StatusSettle:
    """When the Deployment controller last observed one of the controller's applies, and how
    long after the apply; each object's unobserved apply is kept by the caller (its memory)."""

    def __init__(self, settle: float = SETTLE, settle_max: float = SETTLE_MAX,
                 backlog_max: float = BACKLOG_MAX) -> None:
        self.settle = settle
        """0 where nothing will come back to write the status later (one-pass runs)."""
        self.settle_max = settle_max
        self.backlog_max = backlog_max
        self._progress_at: float | None = None
        """When the Deployment controller was last seen observing one of the applies."""
        self._lag = 0.0
        """How long after its apply the Deployment controller observed that one."""

    def observed(self, applied_at: float, now: float) -> None:
        """The Deployment controller has observed the apply made at `applied_at`."""
        self._progress_at, self._lag = now, now - applied_at

    def hold(self, applied_at: float, now: float) -> float:
        """Seconds to hold the status write after an apply made at `applied_at` that the
        Deployment controller has not observed yet (0: write now)."""
        if self.settle <= 0:
            return 0.0
        waited = now - applied_at
        if waited < self.settle:
            return self.settle - waited
        progressing = self._progress_at is not None and now - self._progress_at < self.settle
        if not progressing:
            return 0.0
        due = self._lag * (1 + LAG_MARGIN) + self.settle
        limit = max(self.settle_max, min(self.backlog_max, due))
        if waited >= limit:
            return 0.0
        return min(limit - waited, max(self.settle, due - waited))
