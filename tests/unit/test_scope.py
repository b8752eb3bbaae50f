"""Unit tests for ssa_controller.apptask.scope: which namespaces' AppTasks are reconciled."""

from __future__ import annotations

import pytest

from ssa_controller.apptask.scope import NamespaceScope
from ssa_controller.settings.config import parse_config


def scope(environ: dict[str, str] | None = None, **config: object) -> NamespaceScope:
    return NamespaceScope.of(parse_config(config), environ or {})


@pytest.mark.parametrize(("namespace", "why"), [
    ("kube-system", "ignoredNamespaces: kube-*"),
    ("kube-public", "ignoredNamespaces: kube-*"),
    ("ssa-controller-system", "the controller's own namespace; list it in namespaces to "
                              "reconcile it"),
])
def test_by_default_kube_and_the_own_namespace_are_ignored(namespace: str, why: str) -> None:
    assert scope().ignores(namespace) == why


@pytest.mark.parametrize("namespace", ["default", "team-a", "kubeflow", "my-kube-app"])
def test_by_default_every_other_namespace_is_reconciled(namespace: str) -> None:
    assert scope().ignores(namespace) is None


def test_the_own_namespace_is_the_pods_when_it_runs_in_one() -> None:
    inside = scope({"POD_NAMESPACE": "platform"})
    assert inside.ignores("platform") is not None
    assert inside.ignores("ssa-controller-system") is None
    assert scope(leaderElection={"namespace": "ops"}).ignores("ops") is not None


def test_ignored_namespaces_are_configurable() -> None:
    custom = scope(ignoredNamespaces=["sandbox-*", "legacy"])
    assert custom.ignores("kube-system") is None
    assert custom.ignores("sandbox-1") == "ignoredNamespaces: sandbox-*"
    assert custom.ignores("legacy") == "ignoredNamespaces: legacy"
    assert custom.ignores("legacy-2") is None
    assert scope(ignoredNamespaces=[]).ignores("kube-system") is None


def test_a_listed_namespace_is_reconciled_whatever_else_matches_it() -> None:
    listed = scope(namespaces=["kube-system", "ssa-controller-system", "team-a"])
    for namespace in ("kube-system", "ssa-controller-system", "team-a"):
        assert listed.ignores(namespace) is None
    assert listed.ignores("team-b") == "not listed in namespaces"
