"""Unit tests for runtime.backoff: per-key exponential backoff and the token bucket."""

from __future__ import annotations

import random
import threading

import pytest

from ssa_controller.runtime.backoff import ItemBackoff, TokenBucket


class FakeClock:
    """A clock that only moves when told to; its sleep() advances it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FixedRandom(random.Random):
    """random() always returns the same value, to pin the jitter."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


# --------------------------------------------------------------------------- ItemBackoff


def test_delay_grows_exponentially_without_jitter() -> None:
    b = ItemBackoff(base=0.5, factor=2.0, cap=300.0, jitter=0.0)
    assert [b.when("k") for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert b.failures("k") == 6


def test_delay_is_capped() -> None:
    b = ItemBackoff(base=1.0, factor=3.0, cap=10.0, jitter=0.0)
    assert [b.when("k") for _ in range(5)] == [1.0, 3.0, 9.0, 10.0, 10.0]


def test_huge_failure_counts_stay_at_cap() -> None:
    b = ItemBackoff(base=0.5, factor=2.0, cap=300.0, jitter=0.0)
    assert b.delay(10_000) == 300.0
    for _ in range(2000):
        delay = b.when("k")
    assert delay == 300.0


def test_factor_one_is_constant() -> None:
    b = ItemBackoff(base=2.0, factor=1.0, cap=2.0, jitter=0.0)
    assert {b.when("k") for _ in range(5)} == {2.0}


def test_keys_are_independent_and_forget_resets() -> None:
    b = ItemBackoff(base=1.0, factor=2.0, cap=100.0, jitter=0.0)
    b.when("a")
    b.when("a")
    assert b.when("b") == 1.0
    assert b.failures("a") == 2
    b.forget("a")
    assert b.failures("a") == 0
    assert b.when("a") == 1.0
    assert b.failures("b") == 1
    b.forget("never-seen")  # no error


def test_jitter_only_shortens_and_never_exceeds_cap() -> None:
    b = ItemBackoff(base=1.0, factor=2.0, cap=30.0, jitter=0.5, rng=random.Random(42))
    for failures in range(40):
        delay = b.when("k")
        nominal = min(30.0, 2.0**failures)
        assert nominal * 0.5 <= delay <= nominal
        assert delay <= 30.0


def test_jitter_scale_uses_the_random_source() -> None:
    assert ItemBackoff(1.0, 2.0, 60.0, 0.1, rng=FixedRandom(0.0)).when("k") == 1.0
    assert ItemBackoff(1.0, 2.0, 60.0, 0.1, rng=FixedRandom(0.5)).when("k") == pytest.approx(0.95)
    at_cap = ItemBackoff(60.0, 2.0, 60.0, 0.2, rng=FixedRandom(0.999999))
    assert at_cap.when("k") == pytest.approx(48.0, rel=1e-5)


def test_jitter_spreads_delays() -> None:
    b = ItemBackoff(base=10.0, factor=1.0, cap=10.0, jitter=0.1, rng=random.Random(1))
    delays = [b.when("k") for _ in range(200)]
    assert min(delays) >= 9.0
    assert max(delays) <= 10.0
    assert max(delays) - min(delays) > 0.5


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 2.0, 1.0, 0.1),
        (1.0, 0.5, 10.0, 0.1),
        (2.0, 2.0, 1.0, 0.1),
        (1.0, 2.0, 10.0, 1.5),
        (1.0, 2.0, 10.0, -0.1),
    ],
)
def test_invalid_backoff_parameters(args: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError):
        ItemBackoff(*args)


def test_backoff_is_thread_safe() -> None:
    b = ItemBackoff(base=1.0, factor=1.0, cap=1.0, jitter=0.0)
    threads = [threading.Thread(target=lambda: [b.when("k") for _ in range(500)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.failures("k") == 4000


# --------------------------------------------------------------------------- TokenBucket


def test_bucket_starts_full_then_paces_at_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=10.0, burst=5, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    waits = [bucket.reserve() for _ in range(3)]
    assert waits == pytest.approx([0.1, 0.2, 0.3])


def test_reservations_queue_fairly_and_refill_over_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=2.0, burst=1, clock=clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)
    clock.advance(1.0)  # the two reservations on credit are now paid for
    assert bucket.reserve() == pytest.approx(0.5)
    clock.advance(10.0)  # refill never exceeds burst
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)


def test_try_take_never_goes_into_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=1.0, burst=2, clock=clock)
    assert bucket.try_take() is True
    assert bucket.try_take() is True
    assert bucket.try_take() is False
    assert bucket.try_take() is False
    clock.advance(0.5)
    assert bucket.try_take() is False
    clock.advance(0.5)
    assert bucket.try_take() is True
    assert bucket.try_take() is False


def test_try_take_respects_outstanding_reservations() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=1.0, burst=1, clock=clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)
    clock.advance(1.0)
    assert bucket.try_take() is False  # the refilled token belongs to the reservation
    clock.advance(1.0)
    assert bucket.try_take() is True


def test_wait_sleeps_only_when_needed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=4.0, burst=2, clock=clock, sleep=clock.sleep)
    assert bucket.wait() == 0.0
    assert bucket.wait() == 0.0
    assert clock.slept == []
    assert bucket.wait() == pytest.approx(0.25)
    assert clock.slept == pytest.approx([0.25])


def test_rate_over_a_long_window_is_bounded() -> None:
    """Callers that always wait(): at most qps * t + burst proceed in any window of t seconds."""
    clock = FakeClock()
    qps, burst = 20.0, 50
    bucket = TokenBucket(qps=qps, burst=burst, clock=clock, sleep=clock.sleep)
    start = clock()
    times: list[float] = []
    for i in range(3000):
        bucket.wait()
        times.append(clock())
        clock.advance(0.01 if i % 7 else 0.3)  # bursty caller with idle gaps
    elapsed = times[-1] - start
    assert len(times) <= qps * elapsed + burst + 1e-6
    for width in (0.5, 1.0, 10.0, 60.0):
        j = 0
        for i, t in enumerate(times):
            while times[j] < t - width:
                j += 1
            assert i - j + 1 <= qps * width + burst + 1e-6


@pytest.mark.parametrize(("qps", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_invalid_bucket_parameters(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(qps=qps, burst=burst)


def test_bucket_is_thread_safe() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=1.0, burst=100, clock=clock)
    taken: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            ok = bucket.try_take()
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 100
