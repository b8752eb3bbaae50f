"""Leader election: the pure decision logic with a fake clock, and the run loop on a fake API."""

from __future__ import annotations

import copy
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from ssa_controller.envtest.polling import poll_until
from ssa_controller.kube import LEASES, ApiError
from ssa_controller.leader import (
    Election,
    LeaderElector,
    LeaseRecord,
    default_identity,
    micro_time,
)

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

class FakeLeases:
    """Just enough of the API server for Leases: GET, POST, PUT with resourceVersion checks."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.broken = False
        self.lock = threading.Lock()

    def request(self, method: str, path: str, *, body: Any = None, timeout: float | None = None,
                **_: Any) -> dict[str, Any]:
        with self.lock:
            if self.broken:
                raise ApiError(503, "ServiceUnavailable", "broken on purpose")
            if method == "POST":
                path = f"{path}/{body['metadata']['name']}"
                if path in self.objects:
                    raise ApiError(409, "AlreadyExists", "exists")
            elif path not in self.objects:
                raise ApiError(404, "NotFound", "no lease")
            elif method == "PUT" and (body["metadata"]["resourceVersion"]
                                      != self.objects[path]["metadata"]["resourceVersion"]):
                raise ApiError(409, "Conflict", "stale resourceVersion")
            if method in ("POST", "PUT"):
                self.version += 1
                stored = copy.deepcopy(body)
                stored["metadata"]["resourceVersion"] = str(self.version)
                self.objects[path] = stored
            return copy.deepcopy(self.objects[path])

    def spec(self, namespace: str = "ns", name: str = "lease") -> dict[str, Any]:
        with self.lock:
            return dict(self.objects[LEASES.path(namespace, name)]["spec"])


class Candidate:
    """A LeaderElector running in a thread, recording its callbacks and metric updates."""

    def __init__(self, api: FakeLeases, identity: str) -> None:
        self.started = threading.Event()
        self.lost = threading.Event()
        self.stop = threading.Event()
        self.status: list[tuple[str, bool]] = []
        self.elector = LeaderElector(
            api, namespace="ns", name="lease", identity=identity,  # type: ignore[arg-type]
            lease_duration=1.0, renew_deadline=0.5, retry_period=0.05,
            on_started_leading=self.started.set, on_stopped_leading=self.lost.set,
            metrics=self)
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def set_leader(self, name: str, leading: bool) -> None:
        self.status.append((name, leading))

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def api() -> FakeLeases:
    return FakeLeases()


def test_one_of_two_candidates_leads(api: FakeLeases) -> None:
    a, b = Candidate(api, "a"), Candidate(api, "b")
    poll_until(lambda: a.started.is_set() or b.started.is_set(), timeout=5)
    leader, follower = (a, b) if a.started.is_set() else (b, a)
    assert api.spec()["holderIdentity"] == leader.elector.identity
    assert leader.elector.is_leader and not follower.elector.is_leader
    assert not follower.started.wait(0.3)
    assert leader.status == [("lease", False), ("lease", True)]
    assert follower.status == [("lease", False)]
    for candidate in (a, b):
        candidate.halt()
    assert not (a.lost.is_set() or b.lost.is_set())


def test_release_hands_over_quickly_and_stop_is_not_a_loss(api: FakeLeases) -> None:
    a = Candidate(api, "a")
    poll_until(a.started.is_set, timeout=5)
    b = Candidate(api, "b")
    a.halt()
    assert a.elector.release()
    assert not a.lost.is_set() and not a.elector.is_leader
    assert a.status[-1] == ("lease", False)
    started = time.monotonic()
    poll_until(b.started.is_set, timeout=5)
    assert time.monotonic() - started < 0.5  # well under the 1s lease duration
    spec = api.spec()
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    b.halt()


def test_release_while_running_ends_the_loop_cleanly(api: FakeLeases) -> None:
    a = Candidate(api, "a")
    poll_until(a.started.is_set, timeout=5)
    assert a.elector.release()
    a.thread.join(5)
    assert not a.thread.is_alive() and not a.lost.is_set()
    assert api.spec()["holderIdentity"] == ""


def test_failing_renewals_lose_leadership_after_the_renew_deadline(api: FakeLeases) -> None:
    a = Candidate(api, "a")
    poll_until(a.started.is_set, timeout=5)
    api.broken = True
    broke = time.monotonic()
    poll_until(a.lost.is_set, timeout=5)
    assert time.monotonic() - broke >= 0.4
    assert a.status[-1] == ("lease", False)
    a.thread.join(5)
    assert not a.thread.is_alive()


def test_a_stolen_lease_is_noticed_and_lost(api: FakeLeases) -> None:
    a = Candidate(api, "a")
    poll_until(a.started.is_set, timeout=5)
    with api.lock:
        lease = api.objects[LEASES.path("ns", "lease")]
        lease["spec"]["holderIdentity"] = "thief"
        lease["metadata"]["resourceVersion"] = "stolen"
    poll_until(a.lost.is_set, timeout=5)
    assert not a.elector.is_leader
    assert a.elector.holder == "thief"


def test_release_after_stop_without_leading_is_a_no_op(api: FakeLeases) -> None:
    api.request("POST", LEASES.path("ns"), body={
        "metadata": {"name": "lease"}, "spec": LeaseRecord("other", 15, WALL, WALL).to_spec()})
    a = Candidate(api, "a")
    poll_until(lambda: a.elector.holder == "other", timeout=5)
    a.halt()
    assert a.elector.release()
    assert api.spec()["holderIdentity"] == "other"
    assert not a.started.is_set() and not a.lost.is_set()


def test_rejects_inconsistent_timings(api: FakeLeases) -> None:
    with pytest.raises(ValueError):
        LeaderElector(api, namespace="ns", name="lease", identity="a",  # type: ignore[arg-type]
                      lease_duration=10, renew_deadline=10, retry_period=2,
                      on_started_leading=lambda: None, on_stopped_leading=lambda: None)
