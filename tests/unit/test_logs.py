"""Unit tests for ssa_controller.logs: JSON lines carry the object they are about as
controller-runtime's structured fields."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest

from ssa_controller import logs
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.settings.config import LoggingConfig

WEB = ObjectKey("demo", "web")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def logged(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_lines_logged_in_a_reconcile_carry_its_object_and_reconcile_id(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(LoggingConfig(format="json"))  # writing to this test's captured stderr
    log = logging.getLogger("ssa_controller.reconciler")
    with logs.reconciling("apptask", WEB):
        log.info("demo/web: applied Deployment (created)")
        log.warning("demo/web: status patch failed")
    with logs.reconciling("apptask", WEB):
        log.info("again")
    log.info("outside")
    first, second, again, outside = logged(capsys)
    assert {k: first[k] for k in ("controller", "namespace", "name")} == {
        "controller": "apptask", "namespace": "demo", "name": "web"}
    assert first["msg"] == "demo/web: applied Deployment (created)"
    assert first["reconcileID"] == second["reconcileID"] != again["reconcileID"]
    assert not {"controller", "namespace", "name", "reconcileID"} & outside.keys()


def test_a_line_about_an_object_outside_a_reconcile_names_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(LoggingConfig(format="json"))  # writing to this test's captured stderr
    logging.getLogger("ssa_controller.controller").info(
        "demo/web: AppTask deleted", extra=logs.about("apptask", WEB))
    (line,) = logged(capsys)
    assert (line["controller"], line["namespace"], line["name"]) == ("apptask", "demo", "web")
    assert "reconcileID" not in line


def test_another_threads_reconcile_is_not_this_threads(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(LoggingConfig(format="json"))  # writing to this test's captured stderr
    inside, leave = threading.Event(), threading.Event()

    def reconcile() -> None:
        with logs.reconciling("apptask", ObjectKey("demo", "other")):
            inside.set()
            leave.wait(5)

    worker = threading.Thread(target=reconcile)
    worker.start()
    inside.wait(5)
    logging.getLogger("ssa_controller.runtime.watcher").info("a watch event")
    leave.set()
    worker.join(5)
    (line,) = logged(capsys)
    assert "name" not in line
