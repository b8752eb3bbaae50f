"""The failure-mode lab's tests. Those marked `lab` run every scenario on a local control plane
of their own (a few minutes on 2 cores): they are left out unless the marker expression names
them (`pytest -m lab`, as .ci/run does with a short --seconds; OPT_IN_MARKERS in
tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from ssa_controller.envtest import Assets
from ssa_lab.results import ModeResult
from ssa_lab.run import MODES, run

SECONDS = float(os.environ.get("SSA_LAB_SECONDS", "4"))
"""Measuring time of each run (the command's --seconds); 4 keeps the suite near 3 minutes."""


@pytest.fixture(scope="session")
def lab_results(assets: Assets) -> dict[str, ModeResult]:
    """Every scenario, run once, as `ssa-controller lab --local --seconds SECONDS` does."""
    return {result.mode: result for result in run(MODES, SECONDS)}
