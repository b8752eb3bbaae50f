"""Unit tests for runtime.refusals: a run of 401 answers makes /readyz fail once it has
lasted timeouts.request; another answer ends it."""

from __future__ import annotations

from ssa_controller.runtime.refusals import CredentialRefusals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refusals_make_the_process_unready_once_they_have_lasted() -> None:
    clock = Clock()
    refusals = CredentialRefusals(30.0, clock)
    assert refusals.accepted()
    refusals.observe(401)
    clock.now += 20.0
    refusals.observe(401)
    refusals.observe(0)  # no answer: no news about the credentials
    assert refusals.accepted()
    clock.now += 10.0
    assert not refusals.accepted()


def test_any_other_answer_ends_the_refusals() -> None:
    clock = Clock()
    refusals = CredentialRefusals(30.0, clock)
    refusals.observe(401)
    clock.now += 40.0
    assert not refusals.accepted()
    refusals.observe(403)  # authenticated, if not allowed: the credentials are taken
    assert refusals.accepted()
    refusals.observe(401)
    clock.now += 29.0
    assert refusals.accepted()
