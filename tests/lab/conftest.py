"""The failure-mode lab's tests. Those marked `lab` run every scenario on a local control plane
of their own (a few minutes on 2 cores): they are left out unless the marker expression names
them (`pytest -m lab`, as .ci/run does with a short --seconds)."""

from __future__ import annotations

import os

import pytest

from ssa_controller.envtest import find_assets
from ssa_controller.lab.results import ModeResult
from ssa_controller.lab.run import MODES, run

REQUIRE_CLUSTER = "SSA_REQUIRE_CLUSTER"
SECONDS = float(os.environ.get("SSA_LAB_SECONDS", "4"))
"""Measuring time of each run (the command's --seconds); 4 keeps the suite near 3 minutes."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "lab" in (config.option.markexpr or ""):
        return
    left_out = [item for item in items if item.get_closest_marker("lab")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("lab")]


@pytest.fixture(scope="session")
def lab_results() -> dict[str, ModeResult]:
    """Every scenario, run once, as `ssa-controller lab --local --seconds SECONDS` does."""
    assets = find_assets()
    if assets is None or assets.kube_controller_manager is None:
        reason = "no envtest binaries: run `python -m ssa_controller.envtest install`"
        if os.environ.get(REQUIRE_CLUSTER):
            pytest.fail(f"{reason} ({REQUIRE_CLUSTER} is set)", pytrace=False)
        pytest.skip(reason)
    return {result.mode: result for result in run(MODES, SECONDS)}
