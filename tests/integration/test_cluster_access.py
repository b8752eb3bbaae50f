"""Cluster access gone wrong, against the real API server: a server that is not there yet, a wrong
token, a token whose ServiceAccount was deleted, a missing RBAC permission for one verb.

Each problem is said in one log line naming what is missing (the message is the outcome here, so
the tests read the controller's log for it), and its behaviour is measured: the process stays up
and unready, retries with the watcher's capped backoff (restarts from /metrics while the server
cannot be reached; refused requests from the audit log otherwise: no spinning), and converges
once the server appears.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from conftest import free_port
from helpers import (
    CONTROLLER,
    apptask,
    condition,
    get_deployment,
    put_apptask,
    rbac_path,
    scoped,
)

from ssa_controller.client.kube import Kube
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import ControlPlane, poll_until

USER = "bob"
"""A test user with no permissions of its own: each test binds it to the role it needs."""
WINDOW = 8.0
UNREACHABLE = 6.0


class TcpProxy:
    """Forwards loopback TCP connections on `port` to `target`; started when the test wants the
    API server to "appear" there. Stops its threads and connections on close()."""

    def __init__(self, port: int, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", port))
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass


def kubeconfig(cluster: ControlPlane, path: Path, *, token: str,
               server: str | None = None) -> Path:
    """A kubeconfig for `token` (any string) against `server` (default: the cluster)."""
    cluster.write_kubeconfig(CONTROLLER, path)
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"]["token"] = token
    if server is not None:
        config["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config))
    return path


def ready(process: Any) -> bool:
    try:
        return process.get(process.health_port, "/readyz")[0] == 200
    except urllib3.exceptions.HTTPError:
        return False


def wait_for_log(process: Any, text: str, timeout: float = 30.0) -> str:
    """The first log line containing `text`."""
    def line() -> str | None:
        return next((ln for ln in process.log().splitlines() if text in ln), None)
    return poll_until(line, timeout=timeout, interval=0.2, message=f"log line with {text!r}")


def refused(cluster: ControlPlane, since: int, code: int, **filters: Any) -> list[Any]:
    return [e for e in cluster.audit.select(since, **filters)
            if e.code == code and e.user_agent.startswith("ssa-controller")]


def unauthenticated(cluster: ControlPlane, since: int) -> list[dict[str, Any]]:
    """The controller's requests refused with 401 after byte offset `since`. A request that
    fails authentication leaves only a ResponseStarted line in the audit log (no user, no
    ResponseComplete), which AuditLog.events does not count."""
    with cluster.audit_log_path.open("rb") as log:
        log.seek(since)
        data = log.read()
    lines = data[: data.rfind(b"\n") + 1].splitlines()  # a line being written is left out
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if (r.get("responseStatus") or {}).get("code") == 401
            and r.get("userAgent", "").startswith("ssa-controller")]


@pytest.fixture
def role(admin: Kube):
    """bind(rules) -> binds the test user to a ClusterRole of exactly `rules`; removed after."""
    names: list[str] = []

    def bind(rules: list[dict[str, Any]]) -> None:
        name = f"test-cluster-access-{secrets.token_hex(3)}"
        names.append(name)
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name}, "rules": rules}
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": name},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": name},
                   "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                 "name": USER}]}
        for obj in (role, binding):
            admin.apply(rbac_path(obj), obj, field_manager="tests", force=True)

    yield bind
    for name in names:
        for kind in ("clusterrolebindings", "clusterroles"):
            try:
                admin.delete(f"/apis/rbac.authorization.k8s.io/v1/{kind}/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise


def controller_rules(drop: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """manifests/rbac.yaml's ClusterRole "ssa-controller", without verb `drop[1]` on resource
    `drop[0]`."""
    rules = [
        {"apiGroups": ["example.com"], "resources": ["apptasks"], "verbs": ["list", "watch"]},
        {"apiGroups": ["example.com"], "resources": ["apptasks/status"], "verbs": ["patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"],
         "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": [""], "resources": ["services"],
         "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    if drop is not None:
        for rule in rules:
            if rule["resources"] == [drop[0]]:
                rule["verbs"] = [v for v in rule["verbs"] if v != drop[1]]
    return rules


def test_unreachable_at_start_retries_with_backoff_and_converges_when_the_server_appears(
        admin, controller, namespace, cluster, tmp_path):
    port = free_port()
    server = f"https://127.0.0.1:{port}"
    config = kubeconfig(cluster, tmp_path / "kubeconfig", token=cluster.token(CONTROLLER),
                        server=server)
    proc = controller(scoped(namespace), user=None, args=("--kubeconfig", str(config)),
                      ready=False)
    line = wait_for_log(proc, f"cannot reach the API server at {server}: Connection refused")
    assert "retrying in" in line
    put_apptask(admin, apptask("web", namespace, replicas=1))
    time.sleep(UNREACHABLE)
    assert proc.proc.poll() is None and not ready(proc)
    # Three watches (AppTasks, Deployments, Services), each retrying after 0.5-1 s, 1-2 s,
    # 2-4 s, ...: a handful of attempts, not a spin.
    restarts = proc.metric("ssa_controller_watch_restarts_total{")
    assert 3 <= restarts <= 18, f"{restarts} watch restarts in {UNREACHABLE}s unreachable"

    proxy = TcpProxy(port, cluster.port)  # the server appears where the controller looks
    try:
        appeared = time.monotonic()
        poll_until(lambda: get_deployment(admin, namespace, "web"), timeout=45, interval=0.2,
                   message="Deployment created once the server is reachable")
        converged = time.monotonic() - appeared
        poll_until(lambda: ready(proc), timeout=10, message="ready once synced")
        assert proc.proc.poll() is None
        print(f"converged {converged:.1f}s after the server appeared; {restarts:g} watch "
              f"restarts in {UNREACHABLE:g}s unreachable")
    finally:
        proc.stop()
        proxy.close()


def test_a_wrong_token_is_named_and_retried_with_backoff(controller, namespace, cluster,
                                                        tmp_path):
    config = kubeconfig(cluster, tmp_path / "kubeconfig", token="not-a-valid-token")
    proc = controller(scoped(namespace), user=None, args=("--kubeconfig", str(config)),
                      ready=False)
    wait_for_log(proc, "refuses the credentials (401 Unauthorized): the token or client "
                       "certificate is wrong, expired or revoked")
    mark = cluster.audit.mark()
    time.sleep(WINDOW)
    attempts = unauthenticated(cluster, mark)
    assert 1 <= len(attempts) <= 10, f"{len(attempts)} refused requests in {WINDOW}s"
    print(f"wrong token: {len(attempts)} requests refused with 401 in {WINDOW:g}s")
    assert proc.proc.poll() is None and not ready(proc)


def test_a_deleted_service_accounts_token_is_named_and_not_retried_in_a_spin(
        admin, controller, namespace, cluster, tmp_path, role):
    """A TokenRequest token stops working when its ServiceAccount is deleted: an honest way to
    get a token that expired while the controller runs (the server's minimum expirationSeconds
    is 600)."""
    account = f"ssa-access-{secrets.token_hex(3)}"
    admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": account}})
    request = admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"expirationSeconds": 600}})
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": account, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "ssa-controller"},
               "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]}
    admin.apply(rbac_path(binding), binding, field_manager="tests", force=True)
    config = kubeconfig(cluster, tmp_path / "kubeconfig", token=request["status"]["token"])
    # Watches renewed every 1-1.5 s, so the lost credentials show in the next relist.
    proc = controller(scoped(namespace, timeouts={"watch": "1s"}), user=None,
                      args=("--kubeconfig", str(config)))
    put_apptask(admin, apptask("before", namespace, replicas=1))
    poll_until(lambda: get_deployment(admin, namespace, "before"), timeout=30,
               message="the token works at first")

    admin.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")
    wait_for_log(proc, "refuses the credentials (401 Unauthorized)")
    put_apptask(admin, apptask("after", namespace, replicas=1))
    mark = cluster.audit.mark()
    time.sleep(WINDOW)
    attempts = unauthenticated(cluster, mark)
    assert 1 <= len(attempts) <= 14, f"{len(attempts)} refused requests in {WINDOW}s"
    print(f"deleted ServiceAccount: {len(attempts)} requests refused with 401 in {WINDOW:g}s")
    assert get_deployment(admin, namespace, "after") is None
    assert proc.proc.poll() is None


def test_a_missing_patch_permission_is_named_in_the_status_and_backs_off(
        admin, controller, namespace, cluster, role):
    role(controller_rules(drop=("deployments", "patch")))
    proc = controller(scoped(namespace, backoff={"base": "1s", "factor": 2, "cap": "4s",
                                                 "jitter": 0}), user=USER)
    put_apptask(admin, apptask("web", namespace, replicas=1))

    def failed() -> dict[str, Any] | None:
        status = admin.get(f"/apis/example.com/v1/namespaces/{namespace}/apptasks/web") \
            .get("status") or {}
        return status if status.get("phase") == "Degraded" else None
    status = poll_until(failed, timeout=30, message="the apply failure in the status")
    synced = condition(status, "Synced")
    assert synced["reason"] == "ApplyFailed"
    assert f'User "{USER}" cannot patch resource "deployments" in API group "apps"' \
        in synced["message"], synced["message"]
    mark = cluster.audit.mark()
    time.sleep(WINDOW)
    attempts = refused(cluster, mark, 403, user=USER, resource="deployments", verb="patch")
    # retries after 1, 2, 4, 4, ... s: at most 4 in the window
    assert 1 <= len(attempts) <= 4, f"{len(attempts)} refused applies in {WINDOW}s"
    print(f"no patch permission: {len(attempts)} applies refused with 403 in {WINDOW:g}s")
    assert proc.proc.poll() is None


def test_a_missing_list_permission_is_named_and_does_not_spin(controller, namespace, cluster,
                                                              role):
    role(controller_rules(drop=("apptasks", "list")))
    proc = controller(scoped(namespace), user=USER, ready=False)
    line = wait_for_log(proc, "missing RBAC permission (403 Forbidden)")
    assert f'User "{USER}" cannot list resource "apptasks" in API group "example.com"' in line
    mark = cluster.audit.mark()
    time.sleep(WINDOW)
    attempts = refused(cluster, mark, 403, user=USER, resource="apptasks", verb="list")
    assert 1 <= len(attempts) <= 5, f"{len(attempts)} refused lists in {WINDOW}s"
    print(f"no list permission: {len(attempts)} lists refused with 403 in {WINDOW:g}s")
    assert proc.proc.poll() is None and not ready(proc)
