"""Fixtures that run the controller as users do: a separate process, a config file, a kubeconfig
for a non-admin identity bound by exactly the RBAC in manifests/.

- `cluster`: the session control plane with the CRD installed and manifests/rbac.yaml applied,
  its ClusterRole and Role also bound to the test users "controller" and "controller-2".
- `admin`: an ssa_controller.client.kube.Kube client with the admin token.
- `controller`: a factory starting `ssa-controller run` processes; all are stopped after the test
  (their logs are printed when the test failed). With `user=None` a process gets no kubeconfig
  and finds its credentials from `env` (for example in-cluster ones); `server_url` points its
  kubeconfig at another URL (a fault-injecting proxy). Unless a test sets `timeouts`, watches
  are re-opened every 5-7.5 minutes instead of the default 30-45 s, so that tests counting
  requests over a window do not count watch renewals. $SSA_TRANSPORT, if set, is every
  process's `client.transport` (unless a test sets `client`).

The tests that exercise the transport (TRANSPORT_SUITE: faults, cluster access, in-cluster,
leader election through processes, watches through faults) are marked `transport`: .ci/run runs
them a second time with SSA_TRANSPORT=urllib3.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from helpers import CONTROLLER_NAMESPACE, apply_rbac, rbac_objects
from metrics_scrape import samples

from ssa_controller import crds
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import LEASES
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import ControlPlane, die_with_parent, poll_until

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = "SSA_TRANSPORT"
TRANSPORT_SUITE = frozenset({"test_faults.py", "test_cluster_access.py", "test_incluster.py",
                             "test_leader_handover.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == Path(__file__).parent and item.path.name in TRANSPORT_SUITE:
            item.add_marker(pytest.mark.transport)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    admin = Kube.from_kubeconfig(str(control_plane.kubeconfig))
    crds.install(admin)
    try:
        admin.create("/api/v1/namespaces", {"metadata": {"name": CONTROLLER_NAMESPACE}})
    except ApiError as exc:
        if exc.status != 409:
            raise
    apply_rbac(admin, rbac_objects())
    return control_plane


@pytest.fixture
def admin(cluster: ControlPlane) -> Iterator[Kube]:
    kube = Kube.from_kubeconfig(str(cluster.kubeconfig), user_agent="tests")
    yield kube
    kube.close()


def _environment(overrides: Mapping[str, str | None] | None) -> dict[str, str]:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in (overrides or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


class ControllerProcess:
    """One `ssa-controller run` process with its own config file, ports and log."""

    def __init__(self, plane: ControlPlane, workdir: Path, config: dict[str, Any],
                 user: str | None, args: tuple[str, ...],
                 env: Mapping[str, str | None] | None = None,
                 server_url: str | None = None) -> None:
        """`user` None: no --kubeconfig. `env` entries override the test's environment; a None
        value removes the variable."""
        self.metrics_port, self.health_port = free_port(), free_port()
        server = {"bindAddress": "127.0.0.1", "metricsPort": self.metrics_port,
                  "healthPort": self.health_port, "secureMetrics": False}  # plain HTTP unless
        config = {**config, "server": {**server, **config.get("server", {})}}  # a test says so
        self.config_path = workdir / "controller.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.kubeconfig = (None if user is None
                           else plane.write_kubeconfig(user, workdir / f"kubeconfig-{user}"))
        if server_url is not None and self.kubeconfig is not None:
            kubeconfig = yaml.safe_load(self.kubeconfig.read_text())
            kubeconfig["clusters"][0]["cluster"]["server"] = server_url
            self.kubeconfig.write_text(yaml.safe_dump(kubeconfig))
        self.log_path = workdir / "controller.log"
        self.user = user
        self._log = self.log_path.open("wb")
        kubeconfig = () if self.kubeconfig is None else ("--kubeconfig", str(self.kubeconfig))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssa_controller", "run", "--config", str(self.config_path),
             *kubeconfig, *args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=_environment(env),
            preexec_fn=die_with_parent(os.getpid()))
        self._http = urllib3.PoolManager(retries=False, timeout=5.0)

    def get(self, port: int, path: str) -> tuple[int, str]:
        response = self._http.request("GET", f"http://127.0.0.1:{port}{path}")
        return response.status, response.data.decode()

    def metrics(self) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value}."""
        return samples(self.get(self.metrics_port, "/metrics")[1])

    def metric(self, name: str) -> float:
        """The sum of every sample whose 'name{labels}' starts with `name`."""
        return sum(v for k, v in self.metrics().items() if k.startswith(name))

    def reconciles(self) -> float:
        return self.metric("controller_runtime_reconcile_total{")

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"controller exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self.get(self.health_port, "/readyz")[0] == 200
            except urllib3.exceptions.HTTPError:
                return False
        poll_until(ready, timeout=timeout, message="controller /readyz")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def controller(cluster: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
               ) -> Iterator[Callable[..., ControllerProcess]]:
    """start(config=None, user="controller", args=(), ready=True, plane=None, env=None,
    server_url=None) -> a running controller, on `plane` or else the session cluster (`user`
    None, `env` and `server_url`: see ControllerProcess)."""
    started: list[ControllerProcess] = []

    def start(config: dict[str, Any] | None = None, user: str | None = "controller",
              args: tuple[str, ...] = (), ready: bool = True,
              plane: ControlPlane | None = None,
              env: Mapping[str, str | None] | None = None,
              server_url: str | None = None) -> ControllerProcess:
        workdir = tmp_path / f"controller-{len(started)}"
        workdir.mkdir()
        transport = os.environ.get(TRANSPORT)
        settings = {"leaderElection": {"enabled": False}, "timeouts": {"watch": "5m"},
                    **({"client": {"transport": transport}} if transport else {}),
                    **(config or {})}
        process = ControllerProcess(plane or cluster, workdir, settings, user, args, env,
                                    server_url)
        started.append(process)
        if ready:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL if process.proc.poll() is None else signal.SIGTERM)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for i, process in enumerate(started):
            print(f"--- controller {i} log ---\n{process.log()[-6000:]}")


@pytest.fixture
def lease_name(admin: Kube) -> Iterator[str]:
    """A fresh Lease name in the controller namespace, deleted after the test."""
    name = f"test-{secrets.token_hex(4)}"
    yield name
    try:
        admin.delete(LEASES.path(CONTROLLER_NAMESPACE, name))
    except ApiError as exc:
        if exc.status != 404:
            raise
