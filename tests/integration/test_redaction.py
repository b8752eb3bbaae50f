"""Secrets in output (issue 26.6), through the real entry point against the real API server: a
dry run's plans, as `ssa-controller diff` prints them and `run --dry-run` logs them, show env
values masked (they often hold passwords and tokens) unless `--show-values` asks for them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import CONTROLLER, apptask, put_apptask

from ssa_controller.apptask.redact import MASK
from ssa_controller.client.kube import Kube
from ssa_controller.envtest import ControlPlane

SECRET = "s3cr3t-in-an-env-value"


def ssa_controller(cluster: ControlPlane, tmp_path: Path, namespace: str,
                   *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ssa_controller ARGS` as the controller's user, scoped to `namespace`, with
    JSON logs (a line for each plan a dry run finds)."""
    config = tmp_path / "controller.yaml"
    config.write_text(yaml.safe_dump({"namespaces": [namespace], "logging": {"format": "json"},
                                      "server": {"metricsPort": 0, "healthPort": 0}}))
    kubeconfig = cluster.write_kubeconfig(CONTROLLER, tmp_path / "kubeconfig")
    return subprocess.run([sys.executable, "-m", "ssa_controller", *args, "--config", str(config),
                           "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, timeout=120)


def test_env_values_are_masked_in_plans_unless_asked_for(admin: Kube, namespace: str,
                                                         cluster: ControlPlane,
                                                         tmp_path: Path) -> None:
    put_apptask(admin, apptask("creds", namespace, env=[{"name": "TOKEN", "value": SECRET},
                                                        {"name": "MODE", "value": "prod"}]))
    text = ssa_controller(cluster, tmp_path, namespace, "diff")
    assert text.returncode == 1, text.stderr
    assert "creds: created" in text.stdout
    assert SECRET not in text.stdout + text.stderr and "prod" not in text.stdout
    assert f'{{"name": "TOKEN", "value": "{MASK}"}}' in text.stdout

    as_json = ssa_controller(cluster, tmp_path, namespace, "diff", "-o", "json")
    [plan] = json.loads(as_json.stdout)
    [spec] = [op["value"] for op in plan["patch"] if op["path"] == "/spec"]
    assert spec["template"]["spec"]["containers"][0]["env"] == [
        {"name": "TOKEN", "value": MASK}, {"name": "MODE", "value": MASK}]
    assert SECRET not in as_json.stdout + as_json.stderr

    logged = ssa_controller(cluster, tmp_path, namespace, "run", "--dry-run", "--once")
    assert logged.returncode == 0, logged.stderr
    assert "dry-run" in logged.stdout + logged.stderr
    assert SECRET not in logged.stdout + logged.stderr

    shown = ssa_controller(cluster, tmp_path, namespace, "diff", "--show-values")
    assert f'{{"name": "TOKEN", "value": "{SECRET}"}}' in shown.stdout
    logged = ssa_controller(cluster, tmp_path, namespace, "run", "--dry-run", "--once",
                            "--show-values")
    assert SECRET in logged.stdout + logged.stderr
