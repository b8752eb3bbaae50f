"""Each scenario of the failure-mode lab against the real API server: the bad controller really
shows its failure (a lab whose bad controller does not fail proves nothing), and ours keeps
every bound. The figures come from the audit log and /proc (see ssa_lab/measure.py);
the whole lab runs once per session (conftest.lab_results)."""

from __future__ import annotations

import os

import pytest

from ssa_lab import report
from ssa_lab.results import ModeResult
from ssa_lab.run import MODES

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]

SIGNATURE = {
    "broken": ("writes in the last",),
    "conflicting": ("Deployment generations per minute", "status names the other manager"),
    "retry-bomb": ("requests/s for the refused object", "apply attempts"),
    "leaky": ("threads added",),
    "no-leader": ("Deployments (of",),
    "wrong-watch": ("requests caused by",),
    "crash-loop": ("Deployments duplicated", "Deployments orphaned"),
}
"""The rows in which each bad controller must show its failure, whatever the machine's speed."""


def table(result: ModeResult) -> str:
    return report.text([result], report.context(float(os.environ.get("SSA_LAB_SECONDS", "4")),
                                                "tests/lab"))


@pytest.mark.parametrize("mode", MODES)
def test_bad_controller_fails(lab_results: dict[str, ModeResult], mode: str) -> None:
    result = lab_results[mode]
    print(table(result))
    for prefix in SIGNATURE[mode]:
        rows = [r for r in result.rows if r.measure.startswith(prefix)]
        assert rows, f"{mode}: no row {prefix!r}"
        assert all(r.bad_fails for r in rows), f"{mode}: the bad controller did not fail:\n" \
            + table(result)


@pytest.mark.parametrize("mode", MODES)
def test_ours_keeps_every_bound(lab_results: dict[str, ModeResult], mode: str) -> None:
    result = lab_results[mode]
    print(table(result))
    assert result.rows
    assert all(r.ours_holds is True for r in result.rows), f"{mode}: a bound exceeded:\n" \
        + table(result)
