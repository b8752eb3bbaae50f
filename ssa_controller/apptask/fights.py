"""Detects and damps fights: another writer taking back fields the controller applied. Pure.

A take-back is counted when a field the controller applied (for an unchanged AppTask
generation) is seen changed or owned by someone else after the controller's last apply; it is
counted once per apply, however many times the drift is looked at. `threshold` take-backs within
`window` seconds make a fight. During a fight the controller re-applies only after a growing
delay (base, 2*base, ... up to cap). A fight is over one generation: it ends as soon as the
AppTask's generation changes (a new spec is applied at once, never held by the damping), or when
`window` seconds pass after a re-apply with no take-back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime import backoff


@dataclass(frozen=True)
class Fight:
    """What is known of an ongoing fight over one object."""

    managers: tuple[str, ...]
    fields: tuple[str, ...]
    takebacks: int


@dataclass(slots=True)
class FightState:
    """The take-back history of one object (kept in its memory), for one generation."""

    generation: int
    applied_at: float
    intact: bool = True
    """No take-back seen since the last apply."""
    takebacks: tuple[float, ...] = ()
    """When the take-backs within the window came (a tuple: an empty deque would cost 760 bytes
    per object applied)."""
    fighting: bool = False
    damped_applies: int = 0
    last_takeback: float = 0.0
    managers: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()


class FightTracker:
    """The rules over one object's FightState (None: never applied); the caller keeps the
    state, and its thread-safety (one worker per object)."""

    def __init__(self, threshold: int, window: float, backoff_base: float,
                 backoff_cap: float) -> None:
        self.threshold = threshold
        self.window = window
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

    def applied(self, state: FightState | None, generation: int, now: float) -> FightState:
        """The controller applied the object for `generation`; returns the state to keep."""
        if state is None or state.generation != generation:
            return FightState(generation=generation, applied_at=now)
        state.intact = True
        state.applied_at = now
        if state.fighting:
            state.damped_applies += 1
        return state

    def took_back(self, state: FightState | None, generation: int, managers: tuple[str, ...],
                  fields: tuple[str, ...], now: float) -> Fight | None:
        """Drift seen on fields applied for `generation`; returns the fight if this makes one
        (only the first time, so it is reported once)."""
        if state is None or state.generation != generation or not state.intact:
            return None
        state.intact = False
        state.last_takeback = now
        state.managers, state.fields = managers, fields
        state.takebacks = (*(t for t in state.takebacks if t >= now - self.window), now)
        if not state.fighting and len(state.takebacks) >= self.threshold:
            state.fighting = True
            return self.fight(state, generation, now)
        return None

    def fight(self, state: FightState | None, generation: int, now: float) -> Fight | None:
        """The ongoing fight at `generation`, if any (ending it once the other writer stopped);
        a fight over an earlier generation is no fight over this one."""
        if state is None or not state.fighting or state.generation != generation:
            return None
        if state.intact and now - max(state.applied_at, state.last_takeback) >= self.window:
            state.fighting = False
            state.damped_applies = 0
            state.takebacks = ()
            return None
        return Fight(state.managers, state.fields, len(state.takebacks))

    def apply_delay(self, state: FightState | None, generation: int, now: float) -> float:
        """Seconds to wait before the controller may re-apply at `generation` (0: go ahead;
        always 0 for a generation the fight was not over)."""
        if state is None or self.fight(state, generation, now) is None:
            return 0.0
        delay = backoff.exponential(self.backoff_base, 2.0, self.backoff_cap, state.damped_applies)
        return max(0.0, state.applied_at + delay - now)
