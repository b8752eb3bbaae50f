"""Unit tests for runtime.workqueue: the stingy contract, delays, rate limiting, shutdown."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from ssa_controller.runtime.backoff import ItemBackoff
from ssa_controller.runtime.workqueue import NoopQueueMetrics, QueueMetrics, WorkQueue


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingMetrics:
    """QueueMetrics that keeps every observation."""

    def __init__(self) -> None:
        self.adds = 0
        self.depths: list[int] = []
        self.latencies: list[float] = []
        self.durations: list[float] = []
        self.retries = 0

    def added(self) -> None:
        self.adds += 1

    def depth(self, n: int) -> None:
        self.depths.append(n)

    def queue_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def work_duration(self, seconds: float) -> None:
        self.durations.append(seconds)

    def retried(self) -> None:
        self.retries += 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def backoff() -> ItemBackoff:
    return ItemBackoff(base=1.0, factor=2.0, cap=8.0, jitter=0.0)


@pytest.fixture
def queue(clock: FakeClock) -> WorkQueue:
    return WorkQueue(backoff(), clock=clock)


def drain(queue: WorkQueue) -> list[str]:
    """Get and finish every ready key, in order."""
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


# --------------------------------------------------------------------------- stingy contract


def test_fifo_order(queue: WorkQueue) -> None:
    for key in ("a", "b", "c"):
        queue.add(key)
    assert len(queue) == 3
    assert drain(queue) == ["a", "b", "c"]
    assert len(queue) == 0


def test_get_on_empty_queue_times_out(queue: WorkQueue) -> None:
    assert queue.get(timeout=0) is None
    assert queue.get(timeout=0.01) is None


def test_duplicates_collapse(queue: WorkQueue) -> None:
    for key in ("a", "b", "a", "a", "b"):
        queue.add(key)
    assert len(queue) == 2
    assert drain(queue) == ["a", "b"]


def test_key_is_not_handed_out_twice_while_processing(queue: WorkQueue) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    assert len(queue) == 0
    assert queue.get(timeout=0) is None  # deferred, not handed to a second worker
    queue.done("a")
    assert len(queue) == 1
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.get(timeout=0) is None


def test_adds_during_processing_collapse_into_one_rerun(queue: WorkQueue) -> None:
    queue.add("a")
    key = queue.get(timeout=0)
    for _ in range(5):
        queue.add("a")
    queue.done(key)  # type: ignore[arg-type]
    assert drain(queue) == ["a"]


def test_other_keys_proceed_while_one_is_processing(queue: WorkQueue) -> None:
    queue.add("a")
    queue.add("b")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    assert queue.get(timeout=0) == "b"
    assert queue.get(timeout=0) is None
    queue.done("b")
    queue.done("a")
    assert drain(queue) == ["a"]


def test_deferred_key_goes_to_the_back(queue: WorkQueue) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    queue.add("b")
    queue.done("a")
    assert drain(queue) == ["b", "a"]


def test_done_for_unknown_key_is_ignored(queue: WorkQueue) -> None:
    queue.add("a")
    queue.done("a")  # not being processed: must not duplicate it
    queue.done("zzz")
    assert drain(queue) == ["a"]


def test_blocking_get_is_woken_by_add() -> None:
    queue = WorkQueue(backoff())
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=10)))
    worker.start()
    queue.add("a")
    worker.join(timeout=5)
    assert got == ["a"]


# --------------------------------------------------------------------------- delays


def test_add_after_waits_for_the_clock(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("a", 5.0)
    assert queue.get(timeout=0) is None
    assert (len(queue), queue.delayed()) == (0, 1)
    clock.advance(4.999)
    assert queue.get(timeout=0) is None
    clock.advance(0.001)
    assert (len(queue), queue.delayed()) == (1, 0)
    assert queue.get(timeout=0) == "a"


def test_add_after_zero_or_negative_is_add(queue: WorkQueue) -> None:
    queue.add_after("a", 0)
    queue.add_after("b", -1.0)
    assert queue.delayed() == 0
    assert drain(queue) == ["a", "b"]


def test_delayed_keys_become_ready_in_due_order(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("late", 3.0)
    queue.add_after("early", 1.0)
    queue.add_after("middle", 2.0)
    clock.advance(10.0)
    assert drain(queue) == ["early", "middle", "late"]


def test_earlier_due_time_wins(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("a", 10.0)
    queue.add_after("a", 2.0)  # moved earlier
    queue.add_after("a", 5.0)  # later: ignored
    assert queue.delayed() == 1
    clock.advance(2.0)
    assert drain(queue) == ["a"]
    clock.advance(20.0)  # the superseded entries never fire
    assert drain(queue) == []
    assert queue.delayed() == 0


def test_add_cancels_a_pending_delay(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("a", 5.0)
    queue.add("a")
    assert queue.delayed() == 0
    assert drain(queue) == ["a"]
    clock.advance(10.0)
    assert drain(queue) == []


def test_add_after_on_a_ready_key_is_ignored(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add("a")
    queue.add_after("a", 5.0)
    assert (len(queue), queue.delayed()) == (1, 0)
    assert drain(queue) == ["a"]
    clock.advance(10.0)
    assert drain(queue) == []


def test_delayed_key_due_while_processing_is_deferred(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add_after("a", 1.0)
    clock.advance(1.0)
    assert queue.get(timeout=0) is None
    assert queue.delayed() == 0
    queue.done("a")
    assert drain(queue) == ["a"]


def test_delayed_key_collapses_with_ready_duplicate(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("a", 1.0)
    queue.add("b")
    clock.advance(1.0)
    queue.add("a")
    assert drain(queue) == ["b", "a"]


def test_blocking_get_wakes_when_a_delay_expires() -> None:
    queue = WorkQueue(backoff())  # real monotonic clock
    queue.add_after("a", 0.02)
    assert queue.get(timeout=5) == "a"


def test_blocking_get_notices_an_earlier_delay() -> None:
    queue = WorkQueue(backoff())
    queue.add_after("slow", 60.0)
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=5)))
    worker.start()
    queue.add_after("fast", 0.01)
    worker.join(timeout=5)
    assert got == ["fast"]


# --------------------------------------------------------------------------- rate limiting


def test_add_rate_limited_backs_off_exponentially(queue: WorkQueue, clock: FakeClock) -> None:
    delays = []
    for _ in range(5):
        delays.append(queue.add_rate_limited("a"))
        assert queue.get(timeout=0) is None
        clock.advance(delays[-1])
        assert queue.get(timeout=0) == "a"
        queue.done("a")
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert queue.num_requeues("a") == 5


def test_forget_resets_the_backoff(queue: WorkQueue) -> None:
    queue.add_rate_limited("a")
    queue.add_rate_limited("a")
    assert queue.num_requeues("a") == 2
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    assert queue.add_rate_limited("a") == 1.0


def test_an_add_while_processing_does_not_cut_the_backoff_short(
        queue: WorkQueue, clock: FakeClock) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")  # an event arrives while the failing reconcile runs
    assert queue.add_rate_limited("a") == 1.0
    queue.done("a")
    assert queue.get(timeout=0) is None
    clock.advance(1.0)
    assert drain(queue) == ["a"]


def test_adds_during_a_backoff_coalesce_into_the_one_retry(
        queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_rate_limited("a")
    queue.add_rate_limited("a")  # second failure: held 2 s
    queue.add("a")
    queue.add_after("a", 0.5)
    clock.advance(1.5)
    assert queue.get(timeout=0) is None
    clock.advance(0.5)
    assert drain(queue) == ["a"]
    assert drain(queue) == []


def test_retry_after_longer_than_the_backoff_wins(queue: WorkQueue, clock: FakeClock) -> None:
    assert queue.add_rate_limited("a", at_least=5.0) == 5.0
    queue.add("a")
    clock.advance(4.9)
    assert queue.get(timeout=0) is None
    clock.advance(0.1)
    assert drain(queue) == ["a"]


def test_release_lets_a_new_desired_state_through_at_once(
        queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_rate_limited("a")
    queue.release("a")
    queue.add("a")
    assert drain(queue) == ["a"]
    assert queue.num_requeues("a") == 1


def test_a_hold_ends_by_itself(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_rate_limited("a")
    clock.advance(1.0)
    assert drain(queue) == ["a"]
    queue.add("a")
    assert drain(queue) == ["a"]


# --------------------------------------------------------------------------- shutdown


def test_shut_down_refuses_adds_and_drops_waiting_keys(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("later", 1.0)
    queue.shut_down()
    assert queue.shutting_down
    queue.add("a")
    queue.add_after("b", 1.0)
    queue.add_rate_limited("c")
    clock.advance(10.0)
    assert (len(queue), queue.delayed()) == (0, 0)
    assert queue.get() is None  # returns at once, even without a timeout


def test_shut_down_drains_ready_keys_first(queue: WorkQueue) -> None:
    queue.add("a")
    queue.add("b")
    queue.shut_down()
    assert queue.get() == "a"
    assert queue.get() == "b"
    assert queue.get() is None


def test_processing_finishes_after_shut_down(queue: WorkQueue) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")  # deferred before the shutdown
    queue.shut_down()
    assert queue.get() is None
    queue.done("a")  # still works; the deferred add is handed out to drain
    assert queue.get() == "a"
    queue.done("a")
    assert queue.get() is None


def test_shut_down_wakes_all_blocked_getters() -> None:
    queue = WorkQueue(backoff())
    results: list[str | None] = []
    lock = threading.Lock()

    def getter() -> None:
        key = queue.get()
        with lock:
            results.append(key)

    threads = [threading.Thread(target=getter) for _ in range(4)]
    for t in threads:
        t.start()
    queue.shut_down()
    for t in threads:
        t.join(timeout=5)
    assert results == [None] * 4


# --------------------------------------------------------------------------- metrics


def test_metrics_are_reported(clock: FakeClock) -> None:
    metrics = RecordingMetrics()
    queue = WorkQueue(backoff(), clock=clock, metrics=metrics)
    queue.add("a")
    queue.add("a")  # collapsed: not counted
    queue.add("b")
    assert metrics.adds == 2
    assert metrics.depths[-1] == 2
    clock.advance(0.5)
    assert queue.get(timeout=0) == "a"
    assert metrics.latencies == [0.5]
    assert metrics.depths[-1] == 1
    clock.advance(2.0)
    queue.done("a")
    assert metrics.durations == [2.0]
    queue.add_rate_limited("a")
    assert metrics.retries == 1


def test_noop_metrics_satisfies_the_protocol() -> None:
    metrics: QueueMetrics = NoopQueueMetrics()
    metrics.added()
    metrics.depth(3)
    metrics.queue_latency(0.1)
    metrics.work_duration(0.1)
    metrics.retried()


# --------------------------------------------------------------------------- concurrency


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Make the interpreter switch threads very often, so that races show up quickly."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def hammer(
    queue: WorkQueue, keys: list[str], workers: int, producers: int, adds: int
) -> tuple[list[str], bool]:
    """Producers add keys while workers process them, then the queue is shut down and drained.

    Returns the problems seen (a key processed by two workers at once, a worker
    crashing) and whether the last processing of every key observed the state as of
    that key's last add.
    """
    state = threading.Lock()
    active: Counter[str] = Counter()
    version: Counter[str] = Counter()  # bumped before every add
    seen: dict[str, int] = {}  # version observed by the last processing of each key
    problems: list[str] = []

    def worker() -> None:
        try:
            process_until_shut_down()
        except Exception as exc:  # noqa: BLE001 - any crash is reported below
            problems.append(f"worker crashed: {exc!r}")

    def process_until_shut_down() -> None:
        while (key := queue.get()) is not None:
            with state:
                active[key] += 1
                if active[key] > 1:
                    problems.append(f"{key} processed concurrently")
                seen[key] = version[key]
            sum(range(500))  # a little work, so that overlaps would show
            with state:
                active[key] -= 1
            queue.done(key)

    def producer(offset: int) -> None:
        for i in range(adds):
            key = keys[(i + offset) % len(keys)]
            with state:
                version[key] += 1
            queue.add(key)

    worker_threads = [threading.Thread(target=worker) for _ in range(workers)]
    producer_threads = [threading.Thread(target=producer, args=(n,)) for n in range(producers)]
    for t in worker_threads + producer_threads:
        t.start()
    for t in producer_threads:
        t.join(timeout=30)
    queue.shut_down()  # ready and deferred keys are still drained by the workers
    for t in worker_threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in worker_threads)
    return problems, seen == dict(version)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_no_key_is_ever_processed_concurrently_and_no_add_is_lost() -> None:
    for _ in range(20):
        problems, up_to_date = hammer(WorkQueue(backoff()), ["ns/a", "ns/b", "ns/c"], workers=6,
                                      producers=3, adds=300)
        assert problems == []
        assert up_to_date, "an add made while a key was processing was lost"
