"""Unit tests for ssa_controller.apptask.settle: how long a status write waits for the Deployment
controller to observe an apply."""

from __future__ import annotations

import pytest

from ssa_controller.apptask.settle import StatusSettle


@pytest.fixture
def settling() -> StatusSettle:
    return StatusSettle(settle=2.0, settle_max=10.0, backlog_max=60.0)


def test_an_unobserved_apply_holds_the_status_for_the_settle(settling: StatusSettle) -> None:
    assert settling.hold(100.0, 100.5) == pytest.approx(1.5)
    assert settling.hold(100.0, 102.0) == 0.0  # no progress seen: write it now


def _observing(settling: StatusSettle, behind: float, start: int, end: int) -> None:
    """The Deployment controller observes, every second from `start` to `end`, an apply made
    `behind` seconds before."""
    for at in range(start, end + 1):
        settling.observed(at - behind, float(at))


def test_while_the_deployment_controller_makes_progress_the_hold_stretches_up_to_the_max(
        settling: StatusSettle) -> None:
    _observing(settling, 0.5, 101, 111)
    assert settling.hold(100.0, 102.0) == 2.0
    assert settling.hold(100.0, 109.0) == 1.0  # never past settle_max
    assert settling.hold(100.0, 110.0) == 0.0


def test_behind_by_more_than_the_max_the_hold_lasts_until_its_lag_reaches_the_apply(
        settling: StatusSettle) -> None:
    _observing(settling, 40.0, 101, 112)
    # 12 s: past settle_max; due when the lag reaches it, with a margin: 40 s * 1.25 + 2 s
    assert settling.hold(100.0, 112.0) == 40.0
    _observing(settling, 40.0, 113, 151)
    assert settling.hold(100.0, 151.0) == 1.0
    _observing(settling, 40.0, 152, 152)
    assert settling.hold(100.0, 152.0) == 0.0  # it went past this apply: write now


def test_the_lag_stretches_the_hold_to_the_backlog_max_at_most(settling: StatusSettle) -> None:
    _observing(settling, 100.0, 101, 160)  # a lag of 100 s: due at 127 s, past the 60 s max
    assert settling.hold(100.0, 159.0) == 1.0
    assert settling.hold(100.0, 160.0) == 0.0


def test_progress_older_than_the_settle_does_not_stretch(settling: StatusSettle) -> None:
    settling.observed(99.0, 100.0)
    assert settling.hold(100.0, 102.0) == 0.0


def test_a_settle_of_zero_never_holds() -> None:
    settling = StatusSettle(settle=0.0)
    assert settling.hold(100.0, 100.0) == 0.0
