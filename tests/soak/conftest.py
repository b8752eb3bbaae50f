"""The soak (issue 9, item 6). Tests marked `soak` take minutes: they are left out unless the
marker expression names them (`pytest -m soak tests/soak`, as .ci/run does), like tests/lab."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.option.markexpr or ""):
        return
    left_out = [item for item in items if item.get_closest_marker("soak")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]
