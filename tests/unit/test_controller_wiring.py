"""Unit tests for ssa_controller.controller: who holds which part of the caches."""

from __future__ import annotations

from typing import Any

import pytest

from ssa_controller.apptask.diff import Action, Plan
from ssa_controller.apptask.outcomes import Outcome
from ssa_controller.controller import Controller
from ssa_controller.reconciler import Result
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.runtime.store import Store, WriteAnswers, Writer
from ssa_controller.serving.metrics import Metrics
from ssa_controller.settings.config import Config


class NoEvents:
    def record(self, regarding: Any, type_: str, reason: str, action: str, note: str) -> None:
        pass


def test_only_the_watches_hold_the_cache_writers() -> None:
    """The reconciler reads the caches through their read-only views and records the answers
    of its own writes, nothing else; the controller keeps the views (its handlers, its gauges,
    the resync)."""
    controller = Controller(Config(namespaces=["a", "b"]), object(), NoEvents(),  # type: ignore[arg-type]
                            Metrics())
    writers = {id(watcher.writer) for watcher in controller.watchers}
    assert len(controller.watchers) == 6 and len(writers) == 3  # one per resource
    reconciler = controller.reconciler
    held = [*vars(controller).values(), *vars(reconciler).values()]
    assert not any(isinstance(part, Writer) for part in held)
    assert all(isinstance(view, Store) for view in (
        controller.apptasks, controller.deployments, controller.services, reconciler.apptasks,
        reconciler.deployments, reconciler.services))
    assert all(isinstance(answers, WriteAnswers)
               for answers in (reconciler.apptask_answers, reconciler.deployment_answers,
                               reconciler.service_answers))
    by_resource = {watcher.resource.plural: watcher.writer for watcher in controller.watchers}
    assert by_resource["apptasks"].store is reconciler.apptasks is controller.apptasks
    assert by_resource["deployments"].store is reconciler.deployments is controller.deployments
    assert by_resource["services"].store is reconciler.services is controller.services


def test_a_dry_run_keeps_the_plans_of_both_children(monkeypatch: pytest.MonkeyPatch) -> None:
    controller = Controller(Config(namespaces=["a"], dry_run=True), object(), NoEvents(),  # type: ignore[arg-type]
                            Metrics())
    deployment = Plan("a/web", Action.UNCHANGED)
    service = Plan("a/web (Service)", Action.CREATED)
    monkeypatch.setattr(controller.reconciler, "reconcile", lambda key: Result(
        Outcome.DRY_RUN, plan=deployment, service_plan=service))
    controller.process(ObjectKey("a", "web"))
    assert controller.plans[ObjectKey("a", "web")] == (deployment, service)
