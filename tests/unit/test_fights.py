"""Unit tests for ssa_controller.apptask.fights: take-backs, fight detection, damping and its end.

Time is passed in explicitly (seconds as floats), so no clock is involved. Each test follows one
object, whose FightState it keeps as the reconciler keeps it in the object's memory.
"""

from __future__ import annotations

import sys

import pytest

from ssa_controller.apptask.fights import Fight, FightState, FightTracker

MANAGERS = ("kubectl",)
FIELDS = (".spec.replicas",)
THRESHOLD, WINDOW, BASE, CAP = 3, 30.0, 1.0, 8.0


class Tracked:
    """One object under the tracker's rules, with the FightState its memory would keep."""

    def __init__(self) -> None:
        self.rules = FightTracker(threshold=THRESHOLD, window=WINDOW, backoff_base=BASE,
                                  backoff_cap=CAP)
        self.state: FightState | None = None

    def applied(self, generation: int, now: float) -> None:
        self.state = self.rules.applied(self.state, generation, now)

    def took_back(self, generation: int, managers: tuple[str, ...], fields: tuple[str, ...],
                  now: float) -> Fight | None:
        return self.rules.took_back(self.state, generation, managers, fields, now)

    def fight(self, generation: int, now: float) -> Fight | None:
        return self.rules.fight(self.state, generation, now)

    def apply_delay(self, generation: int, now: float) -> float:
        return self.rules.apply_delay(self.state, generation, now)


@pytest.fixture
def tracker() -> Tracked:
    return Tracked()


def apply_then_take_back(tracker: Tracked, now: float, generation: int = 1) -> Fight | None:
    """The controller applies at `now`; the other writer takes the field back 0.2 s later."""
    tracker.applied(generation, now)
    return tracker.took_back(generation, MANAGERS, FIELDS, now + 0.2)


def start_fight(tracker: Tracked) -> float:
    """Rounds at t = 0, 1, 2 make a fight; returns the time of the last take-back."""
    for t in range(THRESHOLD):
        apply_then_take_back(tracker, float(t))
    return THRESHOLD - 1 + 0.2


# --------------------------------------------------------------------------- detection


def test_threshold_take_backs_within_the_window_make_a_fight(tracker: Tracked) -> None:
    results = [apply_then_take_back(tracker, float(t)) for t in range(THRESHOLD)]
    assert results[:-1] == [None] * (THRESHOLD - 1)
    assert results[-1] == Fight(managers=MANAGERS, fields=FIELDS, takebacks=THRESHOLD)
    assert tracker.fight(1, 2.5) == results[-1]


def test_a_fight_is_reported_once(tracker: Tracked) -> None:
    start_fight(tracker)
    assert apply_then_take_back(tracker, 10.0) is None
    assert tracker.fight(1, 10.5) == Fight(MANAGERS, FIELDS, THRESHOLD + 1)


def test_take_backs_spread_beyond_the_window_make_no_fight(tracker: Tracked) -> None:
    results = [apply_then_take_back(tracker, t) for t in (0.0, 20.0, 40.0, 60.0)]
    assert results == [None] * 4
    assert tracker.fight(1, 61.0) is None


def test_a_take_back_counts_once_per_apply(tracker: Tracked) -> None:
    tracker.applied(1, 0.0)
    looks = [tracker.took_back(1, MANAGERS, FIELDS, 0.1 * i) for i in range(1, 10)]
    assert looks == [None] * 9
    assert apply_then_take_back(tracker, 1.0) is None
    assert apply_then_take_back(tracker, 2.0) is not None


def test_a_take_back_before_any_apply_is_not_counted(tracker: Tracked) -> None:
    assert tracker.took_back(1, MANAGERS, FIELDS, 0.0) is None
    assert apply_then_take_back(tracker, 1.0) is None
    assert apply_then_take_back(tracker, 2.0) is None
    assert apply_then_take_back(tracker, 3.0) is not None


def test_a_take_back_for_an_older_generation_is_not_counted(tracker: Tracked) -> None:
    tracker.applied(2, 0.0)
    assert tracker.took_back(1, MANAGERS, FIELDS, 0.2) is None
    assert tracker.took_back(2, MANAGERS, FIELDS, 0.3) is None
    assert apply_then_take_back(tracker, 1.0, generation=2) is None
    assert apply_then_take_back(tracker, 2.0, generation=2) == Fight(MANAGERS, FIELDS, THRESHOLD)


def test_a_new_generation_resets_the_count(tracker: Tracked) -> None:
    apply_then_take_back(tracker, 0.0)
    apply_then_take_back(tracker, 1.0)
    assert apply_then_take_back(tracker, 2.0, generation=2) is None
    assert apply_then_take_back(tracker, 3.0, generation=2) is None


def test_the_fight_reports_the_latest_managers_and_fields(tracker: Tracked) -> None:
    start_fight(tracker)
    tracker.applied(1, 5.0)
    tracker.took_back(1, ("hpa",), (".spec.replicas", ".spec.template"), 5.2)
    fight = tracker.fight(1, 5.5)
    assert fight is not None
    assert (fight.managers, fight.fields) == (("hpa",), (".spec.replicas", ".spec.template"))


# --------------------------------------------------------------------------- damping


def test_no_delay_without_a_fight(tracker: Tracked) -> None:
    assert tracker.apply_delay(1, 0.0) == 0.0
    apply_then_take_back(tracker, 0.0)
    assert tracker.apply_delay(1, 0.5) == 0.0


def test_the_gap_between_applies_doubles_during_a_fight_up_to_the_cap(
        tracker: Tracked) -> None:
    taken_at = start_fight(tracker)
    applied_at = taken_at - 0.2
    gaps = []
    for _ in range(6):
        next_apply = taken_at + tracker.apply_delay(1, taken_at)
        gaps.append(round(next_apply - applied_at, 6))
        apply_then_take_back(tracker, next_apply)
        applied_at, taken_at = next_apply, next_apply + 0.2
    assert gaps == [BASE, 2 * BASE, 4 * BASE, CAP, CAP, CAP]


def test_apply_delay_counts_down_from_the_last_apply(tracker: Tracked) -> None:
    start_fight(tracker)
    assert tracker.apply_delay(1, 2.2) == pytest.approx(BASE - 0.2)
    assert tracker.apply_delay(1, 2.0 + BASE) == 0.0
    assert tracker.apply_delay(1, 2.0 + 2 * BASE) == 0.0


# --------------------------------------------------------------------------- end of a fight


def test_a_fight_ends_a_window_after_a_re_apply_that_is_not_taken_back(
        tracker: Tracked) -> None:
    start_fight(tracker)
    tracker.applied(1, 10.0)
    assert tracker.fight(1, 10.0 + WINDOW - 0.1) is not None
    assert tracker.fight(1, 10.0 + WINDOW) is None
    assert tracker.apply_delay(1, 10.0 + WINDOW) == 0.0


def test_a_fight_does_not_end_while_the_last_apply_was_taken_back(tracker: Tracked) -> None:
    start_fight(tracker)
    assert tracker.fight(1, 1000.0) is not None


def test_a_new_generation_ends_the_fight(tracker: Tracked) -> None:
    start_fight(tracker)
    tracker.applied(2, 3.0)
    assert tracker.fight(2, 3.0) is None
    assert tracker.apply_delay(2, 3.0) == 0.0


def test_a_new_generation_is_applied_at_once_while_the_old_one_is_damped(
        tracker: Tracked) -> None:
    """The user ships a fix during a fight: it must not wait for the fight's backoff."""
    taken_at = start_fight(tracker)
    assert tracker.apply_delay(1, taken_at) > 0
    assert tracker.fight(2, taken_at) is None
    assert tracker.apply_delay(2, taken_at) == 0.0
    assert tracker.took_back(2, MANAGERS, FIELDS, taken_at) is None


def test_after_a_fight_ends_a_new_one_is_reported_again(tracker: Tracked) -> None:
    start_fight(tracker)
    tracker.applied(1, 10.0)
    assert tracker.fight(1, 10.0 + WINDOW) is None
    rounds = [apply_then_take_back(tracker, 50.0 + t) for t in range(THRESHOLD)]
    assert rounds[:-1] == [None] * (THRESHOLD - 1)
    assert rounds[-1] == Fight(MANAGERS, FIELDS, THRESHOLD)


def test_the_history_of_an_applied_object_stays_small() -> None:
    """Every AppTask the controller applied keeps a FightState in its memory: at 20,000 of them
    an empty deque each (760 bytes) was 15 MB."""
    state = Tracked().rules.applied(None, 1, 0.0)
    assert sys.getsizeof(state) + sys.getsizeof(state.takebacks) <= 200
