"""Whatever the order of write answers and watch events, no change of generation is missed and
no deleted object comes back.

The controller runs in this process (its real Controller, against the real API server, as the
non-admin user bound by manifests/rbac.yaml) so that the test can force the orders that used to
go wrong:
- the user's spec update lands just before the controller's status patch, whose answer
  therefore already carries the new spec and generation, and the AppTask watch delivers the
  user's update only after that answer was recorded;
- the AppTask, or its Deployment, is deleted right after the controller's write was answered,
  and the watch has delivered the deletion before the answer is recorded (issue 24, item 2).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from helpers import (
    HookedKube,
    apptask,
    container,
    controller_client,
    get_deployment,
    in_process,
    put_apptask,
    status_of,
)

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, Obj
from ssa_controller.client.watch import WatchStream
from ssa_controller.controller import Controller
from ssa_controller.envtest import ControlPlane, PollTimeout, poll_until
from ssa_controller.runtime.objectkey import ObjectKey

AFTERMATH = 10.0
"""Seconds during which a deleted object must stay deleted (a Deployment re-created for a
resurrected AppTask came back every second or so)."""


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


class GatedKube(HookedKube):
    """The controller's client, its AppTask watch held back while `gate` is closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()

    def watch(self, path: str, params: Mapping[str, Any], timeout: float) -> Any:
        stream = super().watch(path, params, timeout)
        return GatedStream(stream, self.gate) if "/apptasks" in path else stream


def is_write_to(suffix: str) -> Callable[[str, str, Mapping[str, Any]], bool]:
    """Matches the first write (not a dry run) to a path ending in `suffix`."""
    return lambda method, path, params: (method == "PATCH" and path.endswith(suffix)
                                         and not params.get("dryRun"))


def test_a_spec_change_racing_the_status_write_is_applied(
        admin: Kube, cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    kube: GatedKube = controller_client(cluster, tmp_path, GatedKube)
    answer_rv: list[int] = []

    def user_update_first(send: Callable[[], Obj]) -> Obj:
        kube.gate.clear()
        put_apptask(admin, apptask("racy", namespace, image="nginx:1.27"))  # unpaused: gen 2
        answer = send()
        answer_rv.append(int(answer["metadata"]["resourceVersion"]))
        return answer

    kube.hook(is_write_to("/racy/status"), user_update_first)
    with in_process(kube, namespace) as controller:
        try:
            put_apptask(admin, apptask("racy", namespace, image="nginx:1.25", paused=True))
            key = ObjectKey(namespace, "racy")

            def answer_recorded() -> bool:
                cached = controller.apptasks.get(key)
                return bool(answer_rv) and cached is not None and \
                    int(cached["metadata"]["resourceVersion"]) >= answer_rv[0]
            poll_until(answer_recorded, timeout=30,
                       message="the status patch answer in the cache")
            kube.gate.set()  # now the watch delivers the user's update, after the answer
            deployment = poll_until(lambda: get_deployment(admin, namespace, "racy"), timeout=10,
                                    message="the Deployment of the unpaused AppTask")
            assert container(deployment)["image"] == "nginx:1.27"
        finally:
            kube.gate.set()


def deleted_before_recording(admin: Kube, controller: Controller, path: str,
                             cached: Callable[[], Any]) -> Callable[[Callable[[], Obj]], Obj]:
    """A hook: send the write, then delete the object at `path` and wait until the watch has
    dropped it (`cached()` is None) before the answer goes back to be recorded."""
    def around(send: Callable[[], Obj]) -> Obj:
        answer = send()
        admin.delete(path)
        poll_until(lambda: cached() is None, timeout=30, message=f"the watch dropped {path}")
        return answer
    return around


def stays_absent(read: Callable[[], object], message: str) -> None:
    """Assert that `read()` stays None for AFTERMATH seconds."""
    try:
        found = poll_until(read, timeout=AFTERMATH, interval=0.2)
    except PollTimeout:
        return
    raise AssertionError(f"{message}: {found}")


def test_an_apptask_deleted_while_its_status_write_is_answered_stays_deleted(
        admin: Kube, cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    kube: HookedKube = controller_client(cluster, tmp_path)
    with in_process(kube, namespace) as controller:
        key = ObjectKey(namespace, "doomed")
        fired = kube.hook(is_write_to("/doomed/status"), deleted_before_recording(
            admin, controller, APPTASKS.path(namespace, "doomed"),
            lambda: controller.apptasks.get(key)))
        uid = put_apptask(admin, apptask("doomed", namespace, replicas=0))["metadata"]["uid"]
        poll_until(fired.is_set, timeout=30, message="the status write answered, then deleted")
        sent = len(kube.writes)
        poll_until(lambda: get_deployment(admin, namespace, "doomed") is None, timeout=60,
                   message="its Deployment garbage-collected")
        stays_absent(lambda: get_deployment(admin, namespace, "doomed"),
                     "a Deployment of the deleted AppTask came back")
        assert controller.apptasks.get(key) is None
        assert not [w for w in kube.writes[sent:] if uid in repr(w)], "a write for the dead uid"


def test_a_deployment_deleted_while_its_apply_is_answered_is_created_again(
        admin: Kube, cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    kube: HookedKube = controller_client(cluster, tmp_path)
    with in_process(kube, namespace) as controller:
        key = ObjectKey(namespace, "kept")
        put_apptask(admin, apptask("kept", namespace, replicas=0))
        poll_until(lambda: status_of(admin, namespace, "kept").get("phase") == "Ready"
                   and controller.deployments.get(key), timeout=30, message="Ready and cached")
        fired = kube.hook(is_write_to("/deployments/kept"), deleted_before_recording(
            admin, controller, DEPLOYMENTS.path(namespace, "kept"),
            lambda: controller.deployments.get(key)))
        put_apptask(admin, apptask("kept", namespace, replicas=0, image="nginx:1.27"))
        poll_until(fired.is_set, timeout=30, interval=0.02,
                   message="the apply answered, then deleted")
        dropped = time.monotonic()
        deployment = poll_until(lambda: get_deployment(admin, namespace, "kept"),
                                timeout=AFTERMATH, interval=0.1,
                                message="the deleted Deployment created again")
        print(f"the deleted Deployment created again {time.monotonic() - dropped:.1f}s after "
              "the watch dropped it")
        assert container(deployment)["image"] == "nginx:1.27"
