"""No change of generation is missed, whatever the order of write answers and watch events.

The controller runs in this process (its real Controller, against the real API server, as the
non-admin user bound by manifests/rbac.yaml) so that the test can force the one order that used
to lose a user's change: the user's spec update lands just before the controller's status
patch, whose answer therefore already carries the new spec and generation, and the AppTask
watch delivers the user's update only after that answer was recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from helpers import CONTROLLER, apptask, get_deployment, put_apptask

from ssa_controller.config import parse_config
from ssa_controller.controller import Controller
from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.events import EventRecorder
from ssa_controller.kube import Kube, Obj, WatchStream
from ssa_controller.metrics import Metrics


class GatedStream:
    """A watch stream whose events wait while `gate` is closed (a slow watch connection)."""

    def __init__(self, stream: WatchStream, gate: threading.Event) -> None:
        self._stream = stream
        self._gate = gate

    def __enter__(self) -> GatedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Obj]:
        for event in self._stream:
            self._gate.wait(60)
            yield event

    def close(self) -> None:
        self._stream.close()


class RacingKube(Kube):
    """The controller's client, with a user who updates the AppTask's spec just before the
    controller's first status patch, and an AppTask watch held back meanwhile."""

    def race(self, admin: Kube, user_update: Mapping[str, Any]) -> None:
        """Arm the race: `admin` applies `user_update` before the first status patch."""
        self.admin = admin
        self.user_update = user_update
        self.gate = threading.Event()
        self.gate.set()
        self.answer_rv = 0

    def watch(self, path: str, params: Mapping[str, Any], timeout: float) -> Any:
        stream = super().watch(path, params, timeout)
        return GatedStream(stream, self.gate) if "/apptasks" in path else stream

    def patch(self, path: str, body: Any, content_type: str,
              params: Mapping[str, Any] | None = None) -> Obj:
        if path.endswith("/status") and not self.answer_rv:
            self.gate.clear()
            put_apptask(self.admin, dict(self.user_update))
            answer = super().patch(path, body, content_type, params)
            self.answer_rv = int(answer["metadata"]["resourceVersion"])
            return answer
        return super().patch(path, body, content_type, params)


def test_a_spec_change_racing_the_status_write_is_applied(
        admin: Kube, cluster: ControlPlane, namespace: str, tmp_path: Any) -> None:
    kubeconfig = cluster.write_kubeconfig(CONTROLLER, tmp_path / "kubeconfig")
    kube = RacingKube.from_kubeconfig(str(kubeconfig))
    kube.race(admin, apptask("racy", namespace, image="nginx:1.27"))  # unpaused: generation 2
    config = parse_config({"namespaces": [namespace], "resync": {"period": "1h"},
                           "leaderElection": {"enabled": False}})
    metrics = Metrics()
    events = EventRecorder(kube, instance="test", qps=1, burst=1, enabled=False)
    controller = Controller(config, kube, events, metrics)
    stop = threading.Event()
    controller.start_watches(stop)
    try:
        assert controller.wait_synced(30)
        controller.start_workers()
        put_apptask(admin, apptask("racy", namespace, image="nginx:1.25", paused=True))
        key = f"{namespace}/racy"

        def answer_recorded() -> bool:
            cached = controller.apptasks.get(key)
            return bool(kube.answer_rv) and cached is not None and \
                int(cached["metadata"]["resourceVersion"]) >= kube.answer_rv
        poll_until(answer_recorded, timeout=30, message="the status patch answer in the cache")
        kube.gate.set()  # now the watch delivers the user's update, after the answer
        deployment = poll_until(lambda: get_deployment(admin, namespace, "racy"), timeout=10,
                                message="the Deployment of the unpaused AppTask")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    finally:
        kube.gate.set()
        stop.set()
        controller.stop_watches()
        controller.stop_workers()
        kube.close()
