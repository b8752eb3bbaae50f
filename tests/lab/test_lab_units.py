"""The lab's pieces that need no cluster: statistics, the table, the crash checks, the bad
controllers' labels, the command line's errors."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from ssa_controller import cli
from ssa_lab import bad, measure, plot, report, scenarios
from ssa_lab.results import ModeResult, Row

BAD = Path(bad.__file__).parent


def test_rates_and_slope() -> None:
    assert measure.rates([0.1, 0.2, 0.7, 1.5], 0.5, 2.0) == [(0.0, 4.0), (0.5, 2.0), (1.0, 0.0),
                                                             (1.5, 2.0)]
    assert measure.slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)
    assert measure.slope([(1, 1.0)]) == 0.0


def test_every_bad_controller_says_it_is_wrong_on_purpose() -> None:
    for mode, module in bad.MODULES.items():
        source = (BAD / f"{module}.py").read_text()
        docstring = ast.get_docstring(ast.parse(source)) or ""
        assert docstring.startswith("DELIBERATELY WRONG, used only by the failure-mode lab"), mode
        assert "WRONG" in source.split('"""', 2)[2], f"{mode}: the wrong line is not marked"
    assert set(bad.MODULES) == set(scenarios.SCENARIOS)


def test_table_shows_both_figures_and_what_was_not_measured() -> None:
    result = ModeResult("broken", [
        Row("broken", "writes", 170.0, 4.0, "<= 6", True, True),
        Row("broken", "overlaps", None, None, "0", None, None)])
    text = report.text([result], report.context(5, "somewhere"))
    assert "broken  writes    170  4" in text
    assert "n/m" in text and "audit log" in text
    assert "every bad controller failed" in text
    failing = ModeResult("leaky", [Row("leaky", "threads", 0.0, 0.0, "<= 2", False, True)])
    assert "NOT AS EXPECTED: leaky" in report.text([failing], report.context(5, "x"))


def deployment(name: str, image: str, owner: str | None = None, label: str | None = None):
    meta = {"name": name, "labels": {scenarios.OWNER_LABEL: label} if label else {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "AppTask", "name": owner}]
    return {"metadata": meta,
            "spec": {"template": {"spec": {"containers": [{"image": image}]}}}}


class FakeKube:
    def __init__(self, tasks, deployments) -> None:
        self.items = {"apptasks": tasks, "deployments": deployments}

    def list(self, path: str):
        return {"items": self.items[path.rsplit("/", 1)[1]]}


def task(name: str, image: str, generation: int, observed: int | None):
    return {"metadata": {"name": name, "generation": generation},
            "spec": {"image": image},
            "status": {} if observed is None else {"observedGeneration": observed}}


def test_crash_state_counts_duplicates_orphans_and_half_applied() -> None:
    kube = FakeKube(
        [task("a", "v2", 2, 2), task("b", "v2", 2, 2), task("c", "v1", 1, 1)],
        [deployment("a-1", "v1", label="a"), deployment("a-2", "v2", label="a"),
         deployment("b", "v1", owner="b"), deployment("c", "v1", owner="c"),
         deployment("gone", "v1", owner="deleted")])
    state = scenarios.crash_state(kube, "ns")  # type: ignore[arg-type]
    assert state == {"duplicated": 1, "orphaned": 1, "half_applied": 2, "converged": False}
    kube = FakeKube([task("c", "v1", 1, 1)], [deployment("c", "v1", owner="c")])
    assert scenarios.crash_state(kube, "ns")["converged"]  # type: ignore[arg-type]


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot.PlotUnavailable, match=r"pip install 'ssa-controller\[lab\]'"):
        plot.check()
    assert cli.main(["lab", "broken", "--plot", "/tmp/x"]) == 2
    assert "ssa-controller[lab]" in capsys.readouterr().err


def test_unknown_mode_and_short_seconds_are_usage_errors(capsys) -> None:
    assert cli.main(["lab", "nonsense"]) == 2
    assert "unknown lab mode nonsense" in capsys.readouterr().err
    assert cli.main(["lab", "broken", "--seconds", "0.5"]) == 2
    assert "--seconds must be at least 2" in capsys.readouterr().err
