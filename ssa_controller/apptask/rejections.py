"""Generations the API server refused, and when to try each again. Pure; the time is passed in.

A refusal is not always about the spec (an admission webhook, an immutable field of an adopted
Deployment), so a refused generation is retried with per-object capped exponential backoff, and
at once when its Deployment changes. Decided from memory alone: a resync sends no request
before the retry is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..runtime.backoff import ItemBackoff


def deployment_version(deployment: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """What a refused apply is remembered against: the cached Deployment's uid and generation
    (None: not cached). Re-creating the Deployment or changing its spec changes it."""
    if deployment is None:
        return None
    meta = deployment["metadata"]
    return str(meta.get("uid", "")), int(meta.get("generation", 0))


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused apply: of which generation, against which Deployment, when to try again, and
    how many applies of that generation were refused in a row."""

    generation: int
    deployment: tuple[str, int] | None
    message: str
    retry_at: float
    refusals: int = 1

    def wait(self, deployment: Mapping[str, Any] | None, now: float) -> float:
        """Seconds the refused generation still waits (0: apply it: the Deployment changed,
        or the retry is due). A new generation never waits: the caller drops its rejection."""
        if self.deployment != deployment_version(deployment):
            return 0.0
        return max(0.0, self.retry_at - now)


class Rejections:
    """The backoff of refused generations: `backoff.*`'s, counted per object."""

    def __init__(self, backoff: ItemBackoff[Any]) -> None:
        self._backoff = backoff

    def refused(self, before: Rejection | None, generation: int,
                deployment: Mapping[str, Any] | None, message: str, now: float) -> Rejection:
        """The apply of `generation` was refused with `message` (`before`: the rejection
        remembered until now); returns the rejection to remember."""
        refusals = before.refusals if before is not None and before.generation == generation \
            else 0
        delay = self._backoff.jittered(refusals)
        return Rejection(generation, deployment_version(deployment), message, now + delay,
                         refusals + 1)
