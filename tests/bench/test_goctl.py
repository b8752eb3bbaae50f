"""The Go yardstick (tests/bench/goctl/): its apply body and status are the Python controller's
(apptask.desired.render, apptask.status.compute), and its build is cached by the
hash of its source (tests/bench/goctl_build.py).

The comparisons need the binary: skipped until `tests/bench/goctl_build.py` has built it for
the current Go source (the `goctl` fixture).
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import bench_compare
import goctl_build
import pytest
from bench_compare import apptask

from ssa_controller.apptask import desired, status

NOW = "2024-05-06T07:08:09Z"
EARLIER = "2024-01-02T03:04:05Z"


def with_identity(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    obj["metadata"].update(uid="0c5f6a1e-uid", generation=generation)
    return obj


BENCH = with_identity(apptask("ns", "at-1"), 1)
ROLLING = with_identity(apptask("ns", "roll", "nginx:1.26", 10), 2)
MINIMAL = with_identity({"metadata": {"name": "small", "namespace": "ns"},
                         "spec": {"image": "busybox"}}, 3)
EVERYTHING = with_identity({
    "metadata": {"name": "full", "namespace": "ns"},
    "spec": {"image": "app:2", "replicas": 3, "command": ["/bin/app"], "args": ["-v", "2"],
             "env": [{"name": "A", "value": "1"}, {"name": "EMPTY", "value": ""},
                     {"name": "UNSET"}],
             "ports": [{"containerPort": 53, "protocol": "UDP"},
                       {"name": "http", "containerPort": 80, "protocol": "TCP"},
                       {"containerPort": 8443}],
             "resources": {"requests": {"cpu": "250m", "memory": 134217728},
                           "limits": {"cpu": 1}},
             "labels": {"tier": "web"},
             "annotations": {"note": "ü and <&>"}},
    # a status from before: conditions whose status stays keep their lastTransitionTime
    "status": {"observedGeneration": 1, "phase": "Progressing", "readyReplicas": 1,
               "conditions": [
                   {"type": "Ready", "status": "False", "reason": "DeploymentProgressing",
                    "message": "1/3 replicas ready, 1 updated", "observedGeneration": 1,
                    "lastTransitionTime": EARLIER},
                   {"type": "Synced", "status": "True", "reason": "Synced", "message": "x",
                    "observedGeneration": 1, "lastTransitionTime": EARLIER}]},
}, 4)
EMPTY_RESOURCES = with_identity({"metadata": {"name": "bare", "namespace": "ns"},
                                 "spec": {"image": "x", "resources": {"requests": {}},
                                          "env": [], "labels": {}}}, 1)


def deployment(wanted: int | None, generation: int, **st: Any) -> dict[str, Any]:
    spec = {} if wanted is None else {"replicas": wanted}
    return {"metadata": {"name": "d", "generation": generation}, "spec": spec, "status": st}


DEPLOYMENTS = {
    "just created": deployment(0, 1),
    "applied, not observed": deployment(3, 5, observedGeneration=4, replicas=3,
                                        updatedReplicas=3, readyReplicas=3,
                                        availableReplicas=3),
    "rolling": deployment(3, 5, observedGeneration=5, replicas=4, updatedReplicas=2,
                          readyReplicas=3, availableReplicas=3),
    "ready": deployment(3, 5, observedGeneration=5, replicas=3, updatedReplicas=3,
                        readyReplicas=3, availableReplicas=3),
    "default replicas, ready": deployment(None, 1, observedGeneration=1, replicas=1,
                                          updatedReplicas=1, readyReplicas=1,
                                          availableReplicas=1),
    "replica failure": deployment(2, 1, observedGeneration=1, conditions=[
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": "quota exceeded"}]),
    "past its deadline": deployment(2, 1, observedGeneration=1, readyReplicas=1, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": "too slow"}]),
}


@pytest.mark.parametrize(
    ("task", "state"),
    list(itertools.product([BENCH, ROLLING, MINIMAL, EVERYTHING, EMPTY_RESOURCES],
                           DEPLOYMENTS)),
    ids=[f"{t}-{d}" for t, d in itertools.product(
        ["bench", "rolling", "minimal", "everything", "empty"], DEPLOYMENTS)])
def test_the_go_controller_applies_and_reports_what_the_python_controller_does(
        goctl: Path, task: dict[str, Any], state: str) -> None:
    # The Deployment as either controller finds it in its cache: controlled by the AppTask.
    owner = desired.render(task)["metadata"]["ownerReferences"]
    dep = {**DEPLOYMENTS[state], "metadata": {**DEPLOYMENTS[state]["metadata"],
                                              "ownerReferences": owner}}
    answer = subprocess.run([str(goctl), "render"], check=True, capture_output=True,
                            input=json.dumps({"apptask": task, "deployment": dep, "now": NOW}),
                            text=True, timeout=30)
    got = json.loads(answer.stdout)
    assert got["apply"] == desired.render(task)
    name = task["metadata"]["name"]
    assert got["status"] == status.compute(task, dep, status.Sync.synced(name), NOW)


def test_the_binary_is_named_by_the_hash_of_the_go_files(tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text("package main\n")
    (tmp_path / "notes.txt").write_text("not Go\n")
    first = goctl_build.binary_path(tmp_path)
    (tmp_path / "notes.txt").write_text("changed, still not Go\n")
    assert goctl_build.binary_path(tmp_path) == first
    (tmp_path / "main.go").write_text("package main // changed\n")
    assert goctl_build.binary_path(tmp_path) != first
    (tmp_path / "main.go").write_text("package main\n")
    (tmp_path / "more.go").write_text("package main\n")
    assert goctl_build.binary_path(tmp_path) != first
    assert first.parent == goctl_build.bench_cache()
    assert first.name.startswith("goctl-v1.20.2-")


def test_a_cached_binary_is_used_without_building(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.go").write_text("package main\n")
    cached = goctl_build.binary_path(source)
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    monkeypatch.setattr(goctl_build, "_download_source", lambda *_: pytest.fail("built"))
    assert goctl_build.build(source, log=lambda _: pytest.fail("logged")) == cached


def test_a_missing_prerequisite_is_one_line_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(goctl_build, "GO_BIN", tmp_path / "no-go")
    with pytest.raises(goctl_build.GoBuildError) as raised:
        goctl_build.build(log=lambda _: None)
    message = str(raised.value)
    assert "\n" not in message
    assert f"missing Go 1.19 ({tmp_path / 'no-go' / 'go'}: golang-1.19-go)" in message


def test_the_benchmark_runs_the_others_when_go_cannot_be_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(goctl_build, "GO_BIN", tmp_path / "no-go")
    assert bench_compare.choose(["floor", "go", "controller"]) == [
        bench_compare.Floor, bench_compare.Ours]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("go: skipped: cannot build the Go controller: missing Go 1.19")
