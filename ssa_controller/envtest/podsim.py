"""A pod simulator for tests: a fake Node, pods bound to it and reported Running and Ready.

The local control plane has no scheduler and no kubelet, so Deployment pods would stay Pending. As
kwok does, this watches pods in all namespaces, binds each unbound pod to a fake Ready node through
the pods/binding subresource, writes a Running status with Ready conditions through pods/status, and
finishes the graceful deletion of pods on its node (a kubelet's job). A container whose image
reference cannot be parsed is reported as the kubelet reports it (waiting, `InvalidImageName`),
and its pod Pending and not ready. Run kube-controller-manager without its node-lifecycle
controller (ControlPlane does) so the fake node is never tainted or evicted.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from datetime import UTC, datetime
from typing import Any

from ..client.kube import Kube
from ..client.resources import Obj
from ..client.watch import WatchStream
from ..client.wire import MERGE_PATCH, ApiError, namespace_closed

log = logging.getLogger(__name__)

PODS = "/api/v1/pods"
WATCH_SECONDS = 60  # server-side timeoutSeconds; the client read timeout is a bit longer
READ_TIMEOUT_MARGIN = 15.0
RETRY_SECONDS = 0.5
IGNORED_STATUSES = (404, 409)  # the pod is gone, or someone else got there first


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_running_ready(pod: Obj) -> bool:
    status = pod.get("status", {})
    ready = [c for c in status.get("conditions", []) if c.get("type") == "Ready"]
    return status.get("phase") == "Running" and bool(ready) and ready[0].get("status") == "True"


def _pod_path(pod: Obj, subresource: str = "") -> str:
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    return f"{path}/{subresource}" if subresource else path


def node_manifest(name: str) -> Obj:
    """A Node with ample capacity and a Ready condition."""
    now = _now()
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "type": "envtest"}},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "envtest pod simulator",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.20.2",
                "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "envtest://0",
                "kernelVersion": "",
                "osImage": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-*)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(
    rf"(?P<name>{_NAME})(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?", re.ASCII)
NAME_LIMIT = 255


def image_reference_error(image: str) -> str | None:
    """Why the kubelet cannot pull `image` before even trying (None: it can try): a reference
    that does not parse by docker's grammar (distribution/reference, as v1.20's kubelet vendors
    it), worded as the kubelet words it."""
    match = _REFERENCE.fullmatch(image)
    if match is not None and len(match["name"]) <= NAME_LIMIT:
        return None
    reason = "invalid reference format" if match is None else \
        f"repository name must not be more than {NAME_LIMIT} characters"
    return (f'Failed to apply default image tag "{image}": couldn\'t parse image reference '
            f'"{image}": {reason}')


def _condition(kind: str, ok: bool, now: str, unready: list[str]) -> Obj:
    condition = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                 "lastTransitionTime": now}
    if not ok:
        condition.update(reason="ContainersNotReady",
                         message=f"containers with unready status: [{' '.join(unready)}]")
    return condition


def pod_status(pod: Obj, pod_ip: str) -> Obj:
    """The status a kubelet would report once it started every container of `pod`: Running and
    Ready, unless a container's image reference cannot be parsed (image_reference_error): that
    one waits with reason InvalidImageName, and the pod is Pending and not ready."""
    now = _now()
    spec = pod.get("spec", {})
    broken = {c["name"]: error for c in spec.get("containers", []) + spec.get("initContainers", [])
              if (error := image_reference_error(c.get("image", ""))) is not None}

    def container_status(container: Obj, done: Obj, ready: bool) -> Obj:
        error = broken.get(container["name"])
        state = done if error is None else {
            "waiting": {"reason": "InvalidImageName", "message": error}}
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": f"envtest://{container['name']}",
            "ready": ready and error is None,
            "started": ready and error is None,
            "restartCount": 0,
            "state": state,
        }

    running = {"running": {"startedAt": now}}
    finished = {
        "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
    }
    unready = sorted(broken)
    return {
        "status": {
            "phase": "Pending" if broken else "Running",
            "hostIP": "127.0.0.1",
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "conditions": [
                _condition("Initialized", True, now, unready),
                _condition("Ready", not broken, now, unready),
                _condition("ContainersReady", not broken, now, unready),
                _condition("PodScheduled", True, now, unready),
            ],
            "containerStatuses": [
                container_status(c, running, True) for c in spec.get("containers", [])
            ],
            "initContainerStatuses": [
                container_status(c, finished, False) for c in spec.get("initContainers", [])
            ],
        }
    }


class PodSimulator:
    """Binds every pod to one fake node and reports it started (see pod_status), from a daemon
    thread."""

    def __init__(
        self, url: str, token: str, ca_file: str | None, node_name: str = "envtest-node"
    ) -> None:
        self.node_name = node_name
        # Without a CA file TLS is not verified (as before): a throwaway local control plane.
        self._client = Kube(
            url,
            token=token,
            ca_file=None if ca_file is None else str(ca_file),
            verify=ca_file is not None,
            user_agent="ssa-envtest-pod-simulator",
            request_timeout=10.0,
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: WatchStream | None = None
        self._watch_lock = threading.Lock()
        self._ips = itertools.count()
        self._marked: set[str] = set()  # uids given a status since the last list

    def start(self) -> None:
        """Create (or refresh) the node, then start watching pods."""
        self.ensure_node()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="envtest-pod-simulator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the watch (aborting a blocked read) and join the thread."""
        self._stopping.set()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()  # idempotent, never raises
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._client.close()

    def ensure_node(self) -> None:
        manifest = node_manifest(self.node_name)
        try:
            self._client.create("/api/v1/nodes", manifest)
        except ApiError as exc:
            if exc.status != 409:
                raise
        self._client.patch(
            f"/api/v1/nodes/{self.node_name}/status", {"status": manifest["status"]}, MERGE_PATCH
        )

    # ---- the loop: list, then watch from the list's resourceVersion; relist on 410 or any error

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch_from(self._sync_all())
            except Exception as exc:  # noqa: BLE001 - the simulator thread must never die
                if not self._stopping.is_set():
                    log.info("pod simulator: %s; relisting", exc)
                    self._stopping.wait(RETRY_SECONDS)

    def _sync_all(self) -> str:
        pods = self._client.get(PODS)
        self._marked.clear()
        for pod in pods.get("items", []):
            self._handle(pod)
        return str(pods["metadata"]["resourceVersion"])

    def _watch_from(self, resource_version: str) -> None:
        """Follow pod events until 410 Gone (or stop); reopen the watch when the server ends it
        (or when it is closed)."""
        while not self._stopping.is_set():
            stream = self._client.watch(
                PODS,
                {
                    "resourceVersion": resource_version,
                    "allowWatchBookmarks": True,
                    "timeoutSeconds": WATCH_SECONDS,
                },
                timeout=WATCH_SECONDS + READ_TIMEOUT_MARGIN,
            )
            try:
                with self._watch_lock:
                    self._watch = stream
                if self._stopping.is_set():  # stop() may have missed this stream: close it here
                    return
                for event in stream:
                    if event["type"] == "ERROR":
                        if event["object"].get("code") == 410:
                            return  # too old: relist
                        status = event["object"]
                        raise ValueError(f"watch error {status.get('code')} "
                                         f"{status.get('reason')}: {status.get('message')}")
                    resource_version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._handle(event["object"])
                    elif event["type"] == "DELETED":
                        self._marked.discard(event["object"]["metadata"]["uid"])
            finally:
                with self._watch_lock:
                    self._watch = None
                stream.close()

    # ---- one pod

    def _handle(self, pod: Obj) -> None:
        node = pod.get("spec", {}).get("nodeName")
        if node not in (None, "", self.node_name):
            return
        try:
            if pod["metadata"].get("deletionTimestamp"):
                if node == self.node_name:
                    self._finish_deletion(pod)
            elif not node:
                self._bind(pod)
                self._mark_started(pod)
            elif not _is_running_ready(pod) and pod["metadata"]["uid"] not in self._marked:
                self._mark_started(pod)
        except ApiError as exc:
            # a namespace being deleted refuses its pods' bindings: they go with it
            if exc.status not in IGNORED_STATUSES and not namespace_closed(exc):
                raise

    def _bind(self, pod: Obj) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod["metadata"]["name"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        self._client.create(_pod_path(pod, "binding"), binding)

    def _mark_started(self, pod: Obj) -> None:
        pod_ip = pod.get("status", {}).get("podIP") or self._next_ip()
        self._client.patch(_pod_path(pod, "status"), pod_status(pod, pod_ip), MERGE_PATCH)
        self._marked.add(pod["metadata"]["uid"])

    def _finish_deletion(self, pod: Obj) -> None:
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": pod["metadata"]["uid"]},
        }
        self._client.request("DELETE", _pod_path(pod), body=options)

    def _next_ip(self) -> str:
        n = next(self._ips)
        return f"10.244.{n // 250 % 250}.{n % 250 + 2}"
