"""Leader election: the pure decision logic with a fake clock, and the run loop on a fake API."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from ssa_controller.kube import micro_time
from ssa_controller.leader import Election, LeaderElector, LeaseRecord, default_identity

WALL = "2024-05-06T07:08:09.123456Z"
LATER = "2024-05-06T07:08:19.123456Z"


def held_by(holder: str, renew: str = WALL, transitions: int = 0,
            duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, duration, WALL, renew, transitions)


# --- pure decision logic ---------------------------------------------------------------

def test_acquires_a_missing_lease_with_a_fresh_record() -> None:
    election = Election("me", 15)
    record = election.candidate(None, now=100.0, wall=WALL)
    assert record == LeaseRecord("me", 15, WALL, WALL, 0)


def test_acquires_a_lease_without_holder_and_counts_a_transition() -> None:
    election = Election("me", 15)
    record = election.candidate(LeaseRecord("", 1, WALL, WALL, 4), now=100.0, wall=LATER)
    assert record == LeaseRecord("me", 15, LATER, LATER, 5)


def test_does_not_acquire_while_another_holder_is_fresh() -> None:
    election = Election("me", 15)
    other = held_by("other")
    assert election.candidate(other, now=100.0, wall=LATER) is None
    assert election.candidate(other, now=114.9, wall=LATER) is None
    assert not election.is_leader


def test_takes_over_once_unchanged_for_the_lease_duration_of_the_record() -> None:
    election = Election("me", 15)
    other = held_by("other", transitions=2, duration=10)
    assert election.candidate(other, now=100.0, wall=LATER) is None
    assert election.candidate(other, now=109.9, wall=LATER) is None
    assert election.candidate(other, now=110.0, wall=LATER) == LeaseRecord(
        "me", 15, LATER, LATER, 3)


def test_expiry_is_judged_by_local_observation_time_not_record_timestamps() -> None:
    election = Election("me", 15)
    # renewTime far in the past by wall time: irrelevant, we first observe it now.
    ancient = LeaseRecord("other", 15, "2001-01-01T00:00:00.000000Z",
                          "2001-01-01T00:00:00.000000Z", 0)
    assert election.candidate(ancient, now=500.0, wall=LATER) is None
    assert election.candidate(ancient, now=514.0, wall=LATER) is None
    assert election.candidate(ancient, now=515.0, wall=LATER) is not None


def test_every_observed_change_restarts_the_countdown() -> None:
    election = Election("me", 15)
    assert election.candidate(held_by("other", renew=WALL), now=100.0, wall=LATER) is None
    renewed = held_by("other", renew=LATER)
    assert election.candidate(renewed, now=112.0, wall=LATER) is None
    assert election.candidate(renewed, now=126.9, wall=LATER) is None
    assert election.candidate(renewed, now=127.0, wall=LATER) is not None


def test_renewal_keeps_acquire_time_and_transitions() -> None:
    election = Election("me", 15)
    first = election.candidate(None, now=0.0, wall=WALL)
    assert first is not None
    election.written(first, now=0.0)
    assert election.is_leader
    renewed = election.candidate(first, now=2.0, wall=LATER)
    assert renewed == LeaseRecord("me", 15, WALL, LATER, 0)


def test_leader_renews_even_when_its_own_lease_looks_expired() -> None:
    election = Election("me", 15)
    mine = held_by("me", transitions=1)
    election.written(mine, now=0.0)
    assert election.candidate(mine, now=60.0, wall=LATER) == LeaseRecord(
        "me", 15, WALL, LATER, 1)


def test_observing_another_holder_ends_leadership() -> None:
    election = Election("me", 15)
    election.written(held_by("me"), now=0.0)
    assert election.candidate(held_by("other", renew=LATER, transitions=1), now=20.0,
                              wall=LATER) is None
    assert not election.is_leader


def test_release_clears_holder_and_shortens_the_lease() -> None:
    election = Election("me", 15)
    election.written(held_by("me", transitions=3), now=0.0)
    assert election.release_record(LATER) == LeaseRecord("", 1, LATER, LATER, 3)


def test_release_is_nothing_when_not_leader() -> None:
    election = Election("me", 15)
    assert election.release_record(LATER) is None
    election.candidate(held_by("other"), now=0.0, wall=LATER)
    assert election.release_record(LATER) is None


def test_overdue_only_when_leading_without_renewal() -> None:
    election = Election("me", 15)
    assert not election.overdue(now=1000.0, limit=35)
    election.written(held_by("me"), now=0.0)
    assert not election.overdue(now=35.0, limit=35)
    assert election.overdue(now=35.1, limit=35)
    election.candidate(held_by("other", renew=LATER), now=36.0, wall=LATER)
    assert not election.overdue(now=100.0, limit=35)


def test_fractional_lease_duration_rounds_up() -> None:
    assert Election("me", 1.5).lease_duration_seconds == 2
    assert Election("me", 0.2).lease_duration_seconds == 1


def test_record_round_trips_through_a_lease_spec() -> None:
    record = LeaseRecord("me", 15, WALL, LATER, 7)
    assert LeaseRecord.from_lease({"spec": record.to_spec()}) == record
    assert LeaseRecord.from_lease({"spec": {}}) == LeaseRecord()


def test_micro_time_format() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123, tzinfo=timezone.utc)
    assert micro_time(moment) == "2024-05-06T07:08:09.000123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", micro_time())


def test_default_identity_is_hostname_plus_random_suffix() -> None:
    first, second = default_identity(), default_identity()
    assert first != second
    assert first.rsplit("_", 1)[0] == second.rsplit("_", 1)[0]


# --- run loop on an in-memory API --------------------------------------------------------

def test_rejects_inconsistent_timings() -> None:
    with pytest.raises(ValueError):
        LeaderElector(None, namespace="ns", name="lease", identity="a",  # type: ignore[arg-type]
                      lease_duration=10, renew_deadline=10, retry_period=2,
                      on_started_leading=lambda: None, on_stopped_leading=lambda: None)
