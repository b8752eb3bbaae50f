"""The Go yardstick against the local control plane: the job the benchmark measures it doing.

Per new generation one server-side apply (its own field manager, the body desired.render
gives) and a status that follows the Deployment to Ready; nothing written over converged
AppTasks after a restart; a change made while it was down applied once on start; a deleted
Deployment applied again. Requests are counted from the audit log. Skipped until
tests/bench/goctl_build.py has built the binary for the current Go source.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bench_compare import Go, apptask

from ssa_controller import crds
from ssa_controller.apptask import desired
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.envtest import ApiError, ControlPlane, Kube, die_with_parent, poll_until

pytestmark = pytest.mark.cluster

Start = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    admin = control_plane.client(user_agent="goctl-test")
    crds.install(admin)
    yield admin
    admin.close()


@pytest.fixture
def start(control_plane: ControlPlane, namespace: str, tmp_path: Path, goctl: Path
          ) -> Iterator[Start]:
    """Starts the Go controller on `namespace`; stops what it started after the test and prints
    its log (shown when the test failed)."""
    processes: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "goctl.log"

    def run() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(goctl), "--kubeconfig", str(control_plane.kubeconfig), "--namespace",
                 namespace, "--workers", "4"], stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(os.getpid()))
        processes.append(proc)
        return proc

    try:
        yield run
    finally:
        for proc in processes:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print(log.read_text(errors="replace") if log.exists() else "(no log)")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    assert proc.wait(10) == 0


def writes(plane: ControlPlane, since: int) -> list[tuple[str, str | None, str | None]]:
    return sorted((e.verb, e.target, e.name) for e in plane.audit.events(since)
                  if e.user_agent.startswith(Go.agents) and e.is_write)


def status_of(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    obj = kube.get(APPTASKS.path(ns, name))
    return {"generation": obj["metadata"]["generation"], **(obj.get("status") or {})}


def wait_ready(kube: Kube, ns: str, name: str, generation: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        st = status_of(kube, ns, name)
        done = st.get("observedGeneration") == generation and st.get("phase") == "Ready"
        return st if done else None

    return poll_until(ready, timeout=60, interval=0.1, message=f"{name} Ready at {generation}")


def put(kube: Kube, ns: str, name: str, image: str = "nginx:1.25",
        replicas: int = 1) -> dict[str, Any]:
    return kube.apply(APPTASKS.path(ns, name), apptask(ns, name, image, replicas),
                      field_manager="goctl-test", force=True)


def test_a_creation_is_one_apply_and_the_status_follows_the_deployment_to_ready(
        control_plane: ControlPlane, kube: Kube, namespace: str, start: Start) -> None:
    start()
    mark = control_plane.audit.mark()
    created = put(kube, namespace, "web", replicas=2)
    st = wait_ready(kube, namespace, "web", 1)
    assert st["readyReplicas"] == 2
    assert [c["type"] for c in st["conditions"]] == ["Ready", "Synced", "Conflict"]
    dep = kube.get(DEPLOYMENTS.path(namespace, "web"))
    body = desired.render(created)
    assert dep["metadata"]["ownerReferences"] == body["metadata"]["ownerReferences"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "N", "value": "web"}]
    assert [(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]
            if m["manager"] == "ssa-bench-goctl"] == [("ssa-bench-goctl", "Apply")]
    done = writes(control_plane, mark)
    assert done.count(("patch", "deployments", "web")) == 1
    assert set(done) == {("patch", "deployments", "web"), ("patch", "apptasks/status", "web")}


def test_a_restart_over_converged_apptasks_writes_nothing_and_a_change_made_meanwhile_once(
        control_plane: ControlPlane, kube: Kube, namespace: str, start: Start) -> None:
    proc = start()
    for name in ("a", "b"):
        put(kube, namespace, name)
    for name in ("a", "b"):
        wait_ready(kube, namespace, name, 1)
    stop(proc)
    put(kube, namespace, "b", image="nginx:1.26")  # changed while the controller is down
    mark = control_plane.audit.mark()
    start()
    wait_ready(kube, namespace, "b", 2)
    # a creation after the start is reconciled after what the start enqueued ("a" included)
    put(kube, namespace, "late")
    wait_ready(kube, namespace, "late", 1)
    dep = kube.get(DEPLOYMENTS.path(namespace, "b"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    done = writes(control_plane, mark)
    assert done.count(("patch", "deployments", "b")) == 1
    assert done.count(("patch", "deployments", "late")) == 1
    assert not [w for w in done if w[2] == "a"]


def test_a_deleted_deployment_is_applied_again(
        control_plane: ControlPlane, kube: Kube, namespace: str, start: Start) -> None:
    start()
    put(kube, namespace, "web")
    wait_ready(kube, namespace, "web", 1)
    uid = kube.get(DEPLOYMENTS.path(namespace, "web"))["metadata"]["uid"]
    kube.delete(DEPLOYMENTS.path(namespace, "web"))

    def recreated() -> bool:
        try:
            return bool(kube.get(DEPLOYMENTS.path(namespace, "web"))["metadata"]["uid"] != uid)
        except ApiError as error:
            if error.status == 404:
                return False
            raise

    poll_until(recreated, timeout=60, interval=0.1, message="the Deployment re-created")
    wait_ready(kube, namespace, "web", 1)
