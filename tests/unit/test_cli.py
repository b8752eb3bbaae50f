"""The command line without a cluster: bad configuration is refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ssa_controller.cli import diff_exit_code
from ssa_controller.diff import Plan

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ssa_controller", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("content", "key"), [
    ("workers: 0\n", "workers"),
    ("backoff:\n  base: 1s\n  cap: 100ms\n", "backoff.cap"),
    ("resync:\n  perod: 5m\n", "resync.perod"),
    ("apply:\n  force: 'yes'\n", "apply.force"),
])
def test_an_invalid_config_exits_2_naming_the_key(tmp_path: Path, content: str, key: str) -> None:
    config = tmp_path / "controller.yaml"
    config.write_text(content)
    result = run("run", "--config", str(config), "--kubeconfig", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert f"'{key}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_shipped_config_is_valid_and_a_missing_cluster_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ssa_controller", "run", "--config", "config/controller.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "no kubeconfig or in-cluster config found" in result.stderr


@pytest.mark.parametrize(("actions", "code"), [
    (["unchanged", "unchanged"], 0),
    (["unchanged", "configured"], 1),
    (["created"], 1),
    (["conflict"], 1),
    (["invalid", "unchanged"], 1),
    (["configured", "error"], 2),
    ([], 0),
])
def test_diff_exit_codes_follow_kubectl_diff(actions: list[str], code: int) -> None:
    assert diff_exit_code([Plan(f"ns/{i}", a) for i, a in enumerate(actions)]) == code
