"""Leader election: the pure decision logic with a fake clock, the run loop on a fake API, the
process's rule "workers only while leading", and the audit-log check for two writers at once."""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import Obj
from ssa_controller.client.wire import ApiError, micro_time
from ssa_controller.envtest import poll_until
from ssa_controller.envtest.audit import AuditEvent, WriteSpan, overlapping, write_spans
from ssa_controller.runner import Process
from ssa_controller.runtime.backoff import TokenBucket
from ssa_controller.runtime.leader import Election, LeaderElector, LeaseRecord, default_identity
from ssa_controller.settings.config import parse_config

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
    moment = datetime(2024, 5, 6, 7, 8, 9, 123, tzinfo=UTC)
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


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class LeaseApi:
    """One Lease in memory, behind the `Kube.request` the elector uses. Records each request as
    (method, clock reading, timeout); `latency` seconds of `clock` pass during each."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, latency: float = 0.0) -> None:
        self.clock = clock
        self.latency = latency
        self.lease: Obj | None = None
        self.sent: list[tuple[str, float, float | None]] = []

    def request(self, method: str, path: str, *, body: Obj | None = None,
                timeout: float | None = None, **_: Any) -> Obj:
        self.sent.append((method, self.clock(), timeout))
        if isinstance(self.clock, FakeClock):
            self.clock.now += self.latency
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "NotFound", "no lease")
            return copy.deepcopy(self.lease)
        assert body is not None
        version = int((self.lease or {}).get("metadata", {}).get("resourceVersion", 0))
        if method == "PUT" and body["metadata"]["resourceVersion"] != str(version):
            raise ApiError(409, "Conflict", "the lease changed")
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(version + 1)}}
        return copy.deepcopy(self.lease)

    def count(self, method: str) -> int:
        return sum(1 for sent in self.sent if sent[0] == method)


def elector(api: LeaseApi, clock: Callable[[], float] = time.monotonic,
            timings: tuple[float, float, float] = (15.0, 10.0, 2.0),
            on_started: Callable[[], None] = lambda: None,
            on_stopped: Callable[[], None] = lambda: None) -> LeaderElector:
    lease_duration, renew_deadline, retry_period = timings
    return LeaderElector(api, namespace="ns", name="lease",  # type: ignore[arg-type]
                         identity="me", lease_duration=lease_duration,
                         renew_deadline=renew_deadline, retry_period=retry_period, clock=clock,
                         on_started_leading=on_started, on_stopped_leading=on_stopped)


def test_each_lease_request_gets_only_the_time_left_before_the_deadline() -> None:
    clock = FakeClock(100.0)
    api = LeaseApi(clock, latency=3.0)
    candidate = elector(api, clock)
    assert candidate.try_acquire_or_renew(deadline=110.0)
    assert api.sent == [("GET", 100.0, 10.0), ("POST", 103.0, 7.0)]
    assert candidate.try_acquire_or_renew(deadline=116.0)
    assert api.sent[2:] == [("GET", 106.0, 10.0), ("PUT", 109.0, 7.0)]


def test_no_lease_request_is_sent_once_the_deadline_passed() -> None:
    clock = FakeClock()
    api = LeaseApi(clock, latency=6.0)
    assert not elector(api, clock).try_acquire_or_renew(deadline=5.0)
    assert api.sent == [("GET", 0.0, 5.0)]


def test_run_renews_until_release_then_gives_the_lease_up() -> None:
    api = LeaseApi()
    started, stopped = threading.Event(), threading.Event()
    candidate = elector(api, timings=(1.0, 0.5, 0.05), on_started=started.set,
                        on_stopped=stopped.set)
    thread = threading.Thread(target=candidate.run, daemon=True)  # no stop event: until release
    thread.start()
    assert started.wait(5)
    poll_until(lambda: api.count("PUT") >= 3, timeout=5, message="renewals")
    assert candidate.release() and not candidate.is_leader
    thread.join(1.0)
    assert not thread.is_alive() and not stopped.is_set()
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == ""


# --- the process: workers only while leading, lease kept through the grace period ----------

class FakeController:
    """The Controller surface the runner uses; caches sync when `synced` is set."""

    def __init__(self) -> None:
        self.synced = threading.Event()
        self.started = 0

    def wait_synced(self, timeout: float) -> bool:
        return self.synced.wait(min(timeout, 0.01))

    def start_workers(self) -> list[threading.Thread]:
        self.started += 1
        return []

    def resync(self) -> None: ...
    def stop_watches(self) -> None: ...
    def stop_workers(self) -> None: ...


class FakeElector:
    def __init__(self) -> None:
        self.is_leader = True
        self.released = False

    def release(self) -> bool:
        self.released = True
        return True


@pytest.fixture
def process() -> Any:
    proc = Process(parse_config({"shutdownGracePeriod": "200ms"}), Kube("https://127.0.0.1:9"))
    proc.controller = FakeController()  # type: ignore[assignment]
    proc.elector = FakeElector()  # type: ignore[assignment]
    yield proc
    if proc.scheduler is not None:
        proc.scheduler.shutdown(wait=False)


def starter_finished() -> None:
    for thread in threading.enumerate():
        if thread.name == "start-workers":
            thread.join(5)
            assert not thread.is_alive()


def test_winning_the_lease_returns_at_once_and_workers_start_once_synced(process: Any) -> None:
    began = time.monotonic()
    process.start_leading()
    assert time.monotonic() - began < 0.5
    time.sleep(0.05)
    assert process.controller.started == 0
    process.controller.synced.set()
    poll_until(lambda: process.controller.started == 1, timeout=5, message="workers started")
    starter_finished()
    assert process.controller.started == 1 and process.scheduler is not None


def test_no_workers_start_after_leadership_was_lost_while_the_caches_synced(
        process: Any) -> None:
    process.start_leading()
    process.elector.is_leader = False
    process.controller.synced.set()
    starter_finished()
    assert process.controller.started == 0 and process.scheduler is None


def test_no_workers_start_once_shutdown_began(process: Any) -> None:
    process.start_leading()
    process.shutdown()
    process.controller.synced.set()
    starter_finished()
    assert process.controller.started == 0 and process.elector.released


def test_losing_the_lease_during_shutdown_still_exits_1(process: Any) -> None:
    exits: list[int] = []
    process.exit = exits.append
    process.stop.set()
    process.lost_leadership()
    assert exits == [1]


@pytest.mark.parametrize(("reconcile", "released"), [(0.05, True), (5.0, False)])
def test_the_lease_is_released_only_once_the_workers_finished(
        process: Any, reconcile: float, released: bool) -> None:
    done = threading.Event()
    process.workers = [threading.Thread(target=done.wait, args=(reconcile,), daemon=True)]
    process.workers[0].start()
    process.shutdown()  # with a grace period of 200 ms
    done.set()
    assert process.elector.released is released


def test_the_elector_has_a_client_outside_the_write_rate_limit(process: Any) -> None:
    assert isinstance(process.kube.write_limiter, TokenBucket)
    client = process._elector()._kube
    assert client.write_limiter is None
    assert (client.server, client._pool, client.observer) == (
        process.kube.server, process.kube._pool, process.kube.observer)


# --- one writer at a time, from the audit log --------------------------------------------

T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def write(user: str, received: float, took: float = 0.01) -> AuditEvent:
    """A write by `user` received `received` seconds after T0."""
    start = T0 + timedelta(seconds=received)
    return AuditEvent(user=user, user_agent="", verb="patch", resource="deployments",
                      subresource=None, namespace="ns", name="x", api_group="apps", code=200,
                      request_uri="/", dry_run=False, timestamp=start + timedelta(seconds=took),
                      received=start)


def test_write_spans_run_from_first_receipt_to_last_completion_in_order() -> None:
    spans = write_spans([write("b", 5.0), write("a", 1.0), write("a", 2.0, took=0.5)])
    assert spans == [
        WriteSpan("a", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2.5), 2),
        WriteSpan("b", T0 + timedelta(seconds=5), T0 + timedelta(seconds=5.01), 1),
    ]
    assert overlapping(spans) == []


def test_interleaved_writers_overlap() -> None:
    spans = write_spans([write("a", 1.0), write("b", 2.0), write("a", 3.0)])
    assert [(a.user, b.user) for a, b in overlapping(spans)] == [("a", "b")]


def test_a_write_still_in_flight_when_another_writer_begins_overlaps() -> None:
    spans = write_spans([write("a", 1.0, took=1.0), write("b", 1.5)])
    assert len(overlapping(spans)) == 1


def test_a_labelled_lease_is_created_labelled_and_its_labels_put_back() -> None:
    api = LeaseApi()
    candidate = LeaderElector(api, namespace="ns", name="lease",  # type: ignore[arg-type]
                              identity="me", on_started_leading=lambda: None,
                              on_stopped_leading=lambda: None, labels={"ring": "r"})
    assert candidate.try_acquire_or_renew(time.monotonic() + 5)
    assert api.lease is not None and api.lease["metadata"]["labels"] == {"ring": "r"}
    api.lease["metadata"]["labels"] = {"other": "x"}  # someone relabelled it
    assert candidate.try_acquire_or_renew(time.monotonic() + 5)
    assert api.lease["metadata"]["labels"] == {"other": "x", "ring": "r"}
    version = api.lease["metadata"]["resourceVersion"]
    assert candidate.try_acquire_or_renew(time.monotonic() + 5)
    assert api.lease["metadata"]["labels"] == {"other": "x", "ring": "r"}
    assert api.lease["metadata"]["resourceVersion"] != version  # renewed as ever
