"""The status under a Deployment controller that lags (issue 25, section 3), proven by objects and
the audit log: `observedGeneration` says the controller acted on a generation within seconds,
whatever the Deployment controller does; `Ready` follows once it observed the change, with one
more status write. (One write per change while it keeps up: test_controller.py's
test_one_update_is_one_apply_and_one_status_write and test_a_creation_is_one_apply_...)

The lag is made honestly: kube-controller-manager is paused (SIGSTOP) and the test plays the
Deployment controller for its namespace, observing each Deployment's new generation LAG seconds
after it saw it, one after the other, as a Deployment controller working through a backlog.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from helpers import CONTROLLER, apptask, condition, put_apptask, scoped

from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH
from ssa_controller.envtest import ControlPlane, poll_until

LAG = 6.0
"""How late the played Deployment controller observes each apply: past the controller's settle
(2 s), so the controller sees it lag."""
SPACING = 0.5
CHANGES = 16
"""Changes SPACING seconds apart: those made once the first observations come (LAG seconds in)
meet a Deployment controller seen lagging, the ones before it one not seen yet."""
CURRENT_WITHIN = 4.5
"""observedGeneration is current this soon after its change: the settle (2 s) with room for a
loaded machine, and still before the Deployment controller observed it (LAG)."""


class PlayedDeploymentController:
    """Observes each new generation of the namespace's Deployments `lag` seconds after it first
    saw it (0 replicas: then they are Ready), while kube-controller-manager is paused."""

    def __init__(self, plane: ControlPlane, namespace: str, lag: float) -> None:
        self.kube = plane.client(user_agent="tests-deployment-controller")
        self.namespace, self.lag = namespace, lag
        self.first_seen: dict[tuple[str, int], float] = {}
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.observe(self.kube.list(DEPLOYMENTS.path(self.namespace))["items"])
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return

    def observe(self, deployments: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for deployment in deployments:
            meta = deployment["metadata"]
            generation = meta["generation"]
            if deployment.get("status", {}).get("observedGeneration", 0) >= generation:
                continue
            if now - self.first_seen.setdefault((meta["name"], generation), now) >= self.lag:
                zero = dict.fromkeys(("replicas", "updatedReplicas", "readyReplicas",
                                      "availableReplicas"), 0)
                self.kube.patch(DEPLOYMENTS.path(self.namespace, meta["name"], "status"),
                                {"status": {"observedGeneration": generation, **zero}},
                                MERGE_PATCH)


@contextlib.contextmanager
def lagging_deployment_controller(plane: ControlPlane, namespace: str,
                                  lag: float) -> Iterator[PlayedDeploymentController]:
    manager = plane.pids()["kube-controller-manager"]
    played = PlayedDeploymentController(plane, namespace, lag)
    os.kill(manager, signal.SIGSTOP)
    try:
        played.thread.start()
        yield played
    finally:
        played.stop.set()
        played.thread.join(10)
        played.kube.close()
        os.kill(manager, signal.SIGCONT)
    assert not played.errors, played.errors


def test_a_lagging_deployment_controller_delays_ready_not_observed_generation(
        admin, cluster, controller, namespace):
    names = [f"lag-{i}" for i in range(CHANGES)]
    controller(scoped(namespace))
    for name in names:
        put_apptask(admin, apptask(name, namespace, replicas=0))

    def phases() -> dict[str, tuple[Any, Any]]:
        return {t["metadata"]["name"]: (t.get("status", {}).get("observedGeneration"),
                                        t.get("status", {}).get("phase"))
                for t in admin.list(APPTASKS.path(namespace))["items"]}
    poll_until(lambda: all(p == (1, "Ready") for p in phases().values()), timeout=120,
               message="every AppTask Ready")

    mark = cluster.audit.mark()
    changed: dict[str, float] = {}
    current: dict[str, tuple[float, dict[str, Any]]] = {}
    """name -> (seconds from its change until its status said generation 2, that status)"""
    with lagging_deployment_controller(cluster, namespace, LAG):
        start = time.monotonic()
        while len(current) < CHANGES:
            now = time.monotonic()
            assert now - start < 90, f"statuses current: {sorted(current)}"
            if len(changed) < CHANGES and now >= start + SPACING * len(changed):
                name = names[len(changed)]
                put_apptask(admin, apptask(name, namespace, replicas=0, image="nginx:1.27"))
                changed[name] = time.monotonic()
            for task in admin.list(APPTASKS.path(namespace))["items"]:
                name, status = task["metadata"]["name"], task.get("status", {})
                if name in changed and name not in current \
                        and status.get("observedGeneration") == 2:
                    current[name] = (time.monotonic() - changed[name], status)
            time.sleep(0.05)
        poll_until(lambda: all(p == (2, "Ready") for p in phases().values()), timeout=60,
                   message="every AppTask Ready once the Deployment controller observed it")

        def writes(name: str, resource: str, subresource: str | None = None) -> int:
            return cluster.audit.count(mark, user=CONTROLLER, writes=True, resource=resource,
                                       subresource=subresource, name=name)
        counted = {name: (writes(name, "deployments"), writes(name, "apptasks", "status"))
                   for name in names}

    late = {name: round(seconds, 2) for name, (seconds, _) in current.items()
            if seconds > CURRENT_WITHIN}
    assert not late, f"observedGeneration current only after (s): {late}"
    for name, (_, status) in current.items():  # before the Deployment controller observed it
        ready = condition(status, "Ready")
        assert (status["phase"], ready["status"], ready["reason"]) == (
            "Progressing", "False", "DeploymentProgressing"), (name, status)
        assert ready["message"].startswith("waiting for the Deployment controller"), ready
    assert counted == dict.fromkeys(names, (1, 2)), counted  # an apply; then generation, Ready
