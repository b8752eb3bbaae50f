"""Event recording: per-object rate limits, series of identical events, never blocking."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.runtime.events import (
    EventCorrelator,
    EventRecorder,
    PendingEvent,
    event_name,
    object_reference,
    truncate_note,
)

NS = "team-a"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEventsApi:
    """Records creates and patches of Events; can be told to fail or to block."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.failures: dict[str, ApiError] = {}
        """verb -> error raised by the next call of that verb."""
        self.unblock = threading.Event()
        self.unblock.set()

    def create(self, path: str, body: dict[str, Any], params: Any = None) -> dict[str, Any]:
        return self._call("create", path, body)

    def patch(self, path: str, body: Any, content_type: str, params: Any = None) -> dict[str, Any]:
        assert content_type == MERGE_PATCH
        return self._call("patch", path, body)

    def _call(self, verb: str, path: str, body: Any) -> dict[str, Any]:
        self.unblock.wait(5)
        if verb in self.failures:
            raise self.failures.pop(verb)
        self.calls.append((verb, path, body))
        return body

    def verbs(self) -> list[str]:
        return [verb for verb, _, _ in self.calls]


class FakeMetrics:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, str]] = []
        self.dropped = 0

    def event_emitted(self, type_: str, reason: str) -> None:
        self.emitted.append((type_, reason))

    def event_dropped(self) -> None:
        self.dropped += 1


def apptask(name: str = "web", uid: str = "uid-1") -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": NS, "uid": uid, "resourceVersion": "42"},
            "spec": {"image": "nginx"}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api() -> FakeEventsApi:
    return FakeEventsApi()


@pytest.fixture
def metrics() -> FakeMetrics:
    return FakeMetrics()


def recorder(api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics, *, qps: float = 1.0,
             burst: int = 100, enabled: bool = True, queue_size: int = 100) -> EventRecorder:
    nanos = itertools.count(0x17A0000000000000)
    return EventRecorder(api, instance="host_1", qps=qps, burst=burst,  # type: ignore[arg-type]
                         enabled=enabled, clock=clock, queue_size=queue_size, metrics=metrics,
                         wall_clock=lambda: datetime(2024, 1, 2, 3, 4, 5, 6, UTC),
                         nanos=lambda: next(nanos))


def flush(rec: EventRecorder) -> None:
    """Post everything queued so far (stop drains the queue)."""
    rec.start()
    rec.stop(timeout=5)


def test_first_event_is_created_with_the_events_v1_shape(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics)
    rec.record(apptask(), "Normal", "Applied", "Apply", "applied deployment web")
    flush(rec)
    [(verb, path, body)] = api.calls
    assert verb == "create" and path == f"/apis/events.k8s.io/v1/namespaces/{NS}/events"
    assert body == {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.17a0000000000000", "namespace": NS},
        "eventTime": "2024-01-02T03:04:05.000006Z",
        "reportingController": "example.com/ssa-controller", "reportingInstance": "host_1",
        "action": "Apply", "reason": "Applied", "note": "applied deployment web",
        "type": "Normal",
        "regarding": {"apiVersion": "example.com/v1", "kind": "AppTask", "name": "web",
                      "namespace": NS, "uid": "uid-1", "resourceVersion": "42"}}
    assert metrics.emitted == [("Normal", "Applied")]


def test_repeats_within_ten_minutes_patch_the_series(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics)
    for _ in range(3):
        rec.record(apptask(), "Warning", "Conflict", "Apply", "field .spec.replicas")
        clock.now += 60
    flush(rec)
    assert api.verbs() == ["create", "patch", "patch"]
    name = api.calls[0][2]["metadata"]["name"]
    assert api.calls[1][1].endswith(f"/namespaces/{NS}/events/{name}")
    assert api.calls[1][2] == {"series": {"count": 2,
                                          "lastObservedTime": "2024-01-02T03:04:05.000006Z"}}
    assert api.calls[2][2]["series"]["count"] == 3
    assert len(metrics.emitted) == 3


def test_a_repeat_after_the_window_is_a_new_event(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics)
    rec.record(apptask(), "Normal", "Applied", "Apply", "same")
    clock.now += 599
    rec.record(apptask(), "Normal", "Applied", "Apply", "same")
    clock.now += 1
    rec.record(apptask(), "Normal", "Applied", "Apply", "same")
    flush(rec)
    assert api.verbs() == ["create", "patch", "create"]


def test_different_note_reason_or_object_is_a_new_event(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics)
    rec.record(apptask(), "Normal", "Applied", "Apply", "one")
    rec.record(apptask(), "Normal", "Applied", "Apply", "two")
    rec.record(apptask(), "Normal", "Unchanged", "Apply", "two")
    rec.record(apptask("db", "uid-2"), "Normal", "Applied", "Apply", "one")
    flush(rec)
    assert api.verbs() == ["create"] * 4


def test_per_object_token_bucket_drops_a_hot_loop(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics, qps=0.1, burst=3)
    for i in range(10):
        rec.record(apptask(), "Warning", "Fight", "Apply", f"fight {i}")
    rec.record(apptask("other", "uid-2"), "Warning", "Fight", "Apply", "other object")
    clock.now += 10  # one token back
    rec.record(apptask(), "Warning", "Fight", "Apply", "after refill")
    rec.record(apptask(), "Warning", "Fight", "Apply", "still too hot")
    flush(rec)
    notes = [body["note"] for _, _, body in api.calls]
    assert notes == ["fight 0", "fight 1", "fight 2", "other object", "after refill"]
    assert metrics.dropped == 8


def test_disabled_recorder_does_nothing(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics, enabled=False)
    rec.record(apptask(), "Bogus", "Applied", "Apply", "dry run")
    flush(rec)
    assert api.calls == [] and metrics.emitted == [] and metrics.dropped == 0


def test_invalid_type_is_a_programming_error(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    with pytest.raises(ValueError):
        recorder(api, clock, metrics).record(apptask(), "Info", "Applied", "Apply", "x")


def test_full_queue_drops_and_counts(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics, queue_size=2)
    for i in range(5):
        rec.record(apptask(), "Normal", "Applied", "Apply", f"n{i}")
    assert metrics.dropped == 3
    flush(rec)
    assert len(api.calls) == 2


def test_record_never_blocks_on_a_slow_api(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    api.unblock.clear()
    rec = recorder(api, clock, metrics)
    rec.start()
    for i in range(20):
        rec.record(apptask(), "Normal", "Applied", "Apply", f"n{i}")  # returns at once
    api.unblock.set()
    rec.stop(timeout=5)
    assert len(api.calls) == 20


def test_stop_drops_what_it_cannot_post_in_time(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    api.unblock.clear()
    rec = recorder(api, clock, metrics)
    rec.start()
    for i in range(5):
        rec.record(apptask(), "Normal", "Applied", "Apply", f"n{i}")
    rec.stop(timeout=0.1)
    assert metrics.dropped >= 4
    rec.record(apptask(), "Normal", "Applied", "Apply", "after stop")
    api.unblock.set()
    assert len(api.calls) <= 1


def test_post_failures_are_swallowed_and_later_events_still_post(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics)
    api.failures["create"] = ApiError(403, "Forbidden", "no events for you")
    rec.record(apptask(), "Normal", "Applied", "Apply", "first")
    rec.record(apptask(), "Normal", "Applied", "Apply", "second")
    flush(rec)
    assert [body["note"] for _, _, body in api.calls] == ["second"]
    assert len(metrics.emitted) == 1


def test_series_patch_of_a_vanished_event_creates_a_new_event(
        api: FakeEventsApi, clock: FakeClock, metrics: FakeMetrics) -> None:
    rec = recorder(api, clock, metrics)
    api.failures["patch"] = ApiError(404, "NotFound", "event expired")
    for _ in range(3):
        rec.record(apptask(), "Normal", "Applied", "Apply", "same")
    flush(rec)
    assert api.verbs() == ["create", "create", "patch"]
    assert api.calls[2][1].endswith("/" + api.calls[1][2]["metadata"]["name"])
    assert api.calls[2][2]["series"]["count"] == 2


def pending(observed: float = 1000.0, note: str = "n") -> PendingEvent:
    return PendingEvent(object_reference(apptask()), "Normal", "Applied", "Apply", note,
                        observed, "2024-01-02T03:04:05.000006Z")


def test_correlator_series_bookkeeping(clock: FakeClock) -> None:
    correlator = EventCorrelator(1, 10, clock, window=600)
    assert correlator.repeat_of(pending()) is None
    correlator.posted(pending(), NS, "web.1")
    series = correlator.repeat_of(pending(1001))
    assert series is not None and (series.name, series.count) == ("web.1", 2)
    assert correlator.repeat_of(pending(1599)).count == 3  # type: ignore[union-attr]
    assert correlator.repeat_of(pending(1600)) is None
    assert correlator.repeat_of(pending(1601)) is None  # forgotten until posted again


def test_correlator_caches_are_bounded(clock: FakeClock) -> None:
    correlator = EventCorrelator(0.001, 1, clock, cache_size=2)
    assert correlator.allow({"uid": "a"})
    assert not correlator.allow({"uid": "a"})
    assert correlator.allow({"uid": "b"}) and correlator.allow({"uid": "c"})
    assert correlator.allow({"uid": "a"})  # evicted, so a fresh bucket: acceptable by design


def test_note_is_truncated_to_1024_bytes_on_a_character_boundary() -> None:
    assert truncate_note("x" * 1024) == "x" * 1024
    assert truncate_note("x" * 2000) == "x" * 1024
    cut = truncate_note("é" * 600)
    assert cut == "é" * 512 and len(cut.encode()) == 1024
    assert len(truncate_note("x" + "é" * 600).encode()) == 1023


def test_event_name_is_object_name_and_16_hex_digits() -> None:
    assert event_name("web", 0x17A) == "web.000000000000017a"
    long = event_name("a" * 253, 2**63)
    assert len(long) == 253 and long.endswith(".8000000000000000")


def test_object_reference_skips_missing_fields() -> None:
    assert object_reference({"kind": "AppTask", "metadata": {"name": "x"}}) == {
        "kind": "AppTask", "name": "x"}
