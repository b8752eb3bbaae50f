"""Fixtures for the tests of the benchmark's own parts (tests/bench/)."""

from __future__ import annotations

from pathlib import Path

import goctl_build
import pytest


@pytest.fixture
def goctl() -> Path:
    """The Go yardstick's binary; skips until `tests/bench/goctl_build.py` has built it for the
    current Go source (the test run does not build it: minutes of CPU)."""
    path = goctl_build.binary_path()
    if not path.is_file():
        pytest.skip(f"the Go yardstick is not built for this source ({path.name}): "
                    "run tests/bench/goctl_build.py")
    return path
