"""Unit tests for ssa_controller.apptask.settle: how long a status write waits for the Deployment
controller to observe an apply."""

from __future__ import annotations

import pytest

from ssa_controller.apptask.settle import StatusSettle


@pytest.fixture
def settling() -> StatusSettle:
    return StatusSettle(settle=2.0)


def test_an_unobserved_apply_holds_the_status_for_the_settle(settling: StatusSettle) -> None:
    assert settling.hold(100.0, 100.5) == pytest.approx(1.5)
    assert settling.hold(100.0, 102.0) == 0.0  # not observed in time: write it now


def test_while_the_deployment_controller_keeps_up_the_hold_is_the_settle(
        settling: StatusSettle) -> None:
    settling.observed(99.5, 100.0)  # observed half a second after its apply
    assert settling.hold(100.0, 100.5) == pytest.approx(1.5)
    assert not settling.lagging(100.5)


def test_while_the_deployment_controller_lags_beyond_the_settle_nothing_is_held(
        settling: StatusSettle) -> None:
    """Holding cannot save a write then: it will observe this apply later still."""
    settling.observed(60.0, 100.0)
    assert settling.lagging(100.5) and settling.hold(100.0, 100.5) == 0.0


def test_a_lag_seen_longer_ago_than_the_settle_no_longer_counts(settling: StatusSettle) -> None:
    settling.observed(60.0, 100.0)
    assert not settling.lagging(102.0) and settling.hold(102.0, 102.5) == pytest.approx(1.5)


@pytest.mark.parametrize("lag", [0.0, 0.5, 1.9, 2.0, 40.0, 300.0])
def test_the_hold_is_bounded_by_the_settle_whatever_the_lag(settling: StatusSettle,
                                                            lag: float) -> None:
    """Seconds, never minutes: however far behind the Deployment controller works, and however
    busily (it observed an apply `lag` seconds late just now)."""
    for waited in (0.0, 0.1, 1.0, 1.99, 2.0, 30.0, 200.0):
        now = 100.0 + waited
        settling.observed(now - lag, now)
        assert 0.0 <= settling.hold(100.0, now) <= max(0.0, 2.0 - waited) + 1e-9


def test_a_settle_of_zero_never_holds() -> None:
    settling = StatusSettle(settle=0.0)
    assert settling.hold(100.0, 100.0) == 0.0
