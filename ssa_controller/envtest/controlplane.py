"""A real local control plane: etcd + kube-apiserver (+ kube-controller-manager) on loopback.

`ControlPlane` is a context manager that starts the processes in a work folder on free ports, with
token authentication (an admin in system:masters plus named non-admin users for RBAC tests), RBAC
authorization and a Metadata-level audit log, and stops them all on exit. Each child is killed by
the kernel if this process dies (PR_SET_PDEATHSIG), so none outlives a crashed or killed test run.
kube-apiserver can be restarted with the same ports, certificates and data (etcd keeps running).
With `watch_cache=False` kube-apiserver serves watches straight from etcd, so after `compact()` a
watch from an older resourceVersion answers 410 Gone at once (its watch cache would keep serving
it): how tests force a relist.
"""

from __future__ import annotations

import base64
import csv
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import urllib3
import yaml

from ..client.kube import Kube
from ..client.wire import ApiError
from .assets import Assets, AssetsError, find_assets
from .audit import AuditLog
from .polling import PollTimeout, poll_until

ADMIN_USER = "admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
POD_SIMULATOR_USER = "envtest-pod-simulator"
MASTERS = "system:masters"
DEFAULT_USERS: Mapping[str, Sequence[str]] = {
    "controller": (),
    "controller-2": (),
    "alice": (),
    "bob": (),
}
CONTROLLERS = "*,-nodeipam,-nodelifecycle,-bootstrapsigner,-tokencleaner"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
# kube-apiserver waits up to 60 s for open watches to end after SIGTERM; its state is all in etcd,
# so after this grace period it is killed.
APISERVER_STOP_GRACE = 3.0
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or to become ready."""


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: have the kernel SIGKILL the child when the thread that started it goes away."""

    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class _Child:
    """One control-plane process with its log file in the work folder."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, grace: float = STOP_TIMEOUT
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.grace = grace
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; always waits for the process."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(self.grace)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def failure(self, what: str, lines: int = 30) -> ControlPlaneError:
        status = self._process.poll() if self._process else None
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        state = f"exited with status {status}" if status is not None else "is still running"
        return ControlPlaneError(
            f"{self.name} {what} ({state}); last lines of {self.log_path}:\n" + "\n".join(tail)
        )


def _wait_ready(
    child: _Child, probe: Callable[[], bool], what: str, timeout: float = START_TIMEOUT
) -> None:
    """Poll `probe` until it holds; fail early with the log's tail if the process exits."""

    def ready() -> bool:
        if not child.running:
            raise child.failure("exited while starting")
        return probe()

    try:
        poll_until(
            ready,
            timeout=timeout,
            interval=0.1,
            message=what,
            ignore=(urllib3.exceptions.HTTPError, OSError, ApiError),
        )
    except PollTimeout as exc:
        raise child.failure(f"did not become ready: {exc}") from None


def _private(path: Path) -> IO[str]:
    """`path` opened for writing, readable and writable by this user only, from its first byte
    (a file that existed is made so too)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "w", newline="")


def _write_tokens(
    path: Path, tokens: Mapping[str, str], groups: Mapping[str, Sequence[str]]
) -> None:
    """The token file: system:masters tokens among them, so for this user only."""
    with _private(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        for user, token in tokens.items():
            row = [token, user, user]
            if groups[user]:
                row.append(",".join(groups[user]))
            writer.writerow(row)


def _argv(binary: Path, flags: Mapping[str, object]) -> list[str]:
    return [str(binary), *(f"{flag}={value}" for flag, value in flags.items())]


def _safe_name(user: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", user)


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) for tests and local runs.

    `workdir` holds certificates, tokens, kubeconfigs, the audit log and one log per process; a
    temporary folder (removed on stop) when None. etcd's data lives only as long as the object.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        controller_manager: bool = False,
        users: Mapping[str, Sequence[str]] | None = None,
        apiserver_args: Sequence[str] = (),
        assets: Assets | None = None,
        watch_cache: bool = True,
        controllers: str = CONTROLLERS,
    ) -> None:
        """`watch_cache=False`: kube-apiserver --watch-cache=false (see compact()).
        `controllers`: kube-controller-manager's --controllers (a test that plays one of them
        itself, say the namespace controller, leaves it out: `CONTROLLERS + ",-namespace"`)."""
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="ssa-envtest-")) if workdir is None else Path(workdir)
        )
        self._want_controller_manager = controller_manager
        self._apiserver_args = list(apiserver_args)
        self._watch_cache = watch_cache
        self._controllers = controllers
        self._assets = assets
        self._groups: dict[str, Sequence[str]] = {
            ADMIN_USER: (MASTERS,),
            CONTROLLER_MANAGER_USER: (MASTERS,),
            POD_SIMULATOR_USER: (MASTERS,),
            **(DEFAULT_USERS if users is None else users),
        }
        self._tokens = {user: secrets.token_hex(16) for user in self._groups}
        etcd_port, peer_port, self.port = _free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._peer_url = f"http://127.0.0.1:{peer_port}"
        self.url = f"https://127.0.0.1:{self.port}"
        self.cert_dir = self.workdir / "certs"
        self.ca_file = self.cert_dir / "apiserver.crt"
        self.audit_log_path = self.workdir / "audit.log"
        self.audit = AuditLog(self.audit_log_path)
        self.kubeconfig = self.workdir / "kubeconfig"
        self._children: dict[str, _Child] = {}

    # ---- users and clients

    @property
    def admin_token(self) -> str:
        return self._tokens[ADMIN_USER]

    @property
    def users(self) -> list[str]:
        return list(self._tokens)

    def token(self, user: str) -> str:
        try:
            return self._tokens[user]
        except KeyError:
            raise KeyError(
                f"no token for user {user!r}; known users: {', '.join(self._tokens)}"
            ) from None

    def client(
        self, user: str = ADMIN_USER, *, user_agent: str = "ssa-envtest", timeout: float = 10.0
    ) -> Kube:
        """A `ssa_controller.client.kube.Kube` client authenticated as `user` (TLS verified)."""
        return Kube(
            self.url,
            token=self.token(user),
            ca_file=str(self.ca_file),
            user_agent=user_agent,
            request_timeout=timeout,
        )

    def write_kubeconfig(self, user: str, path: Path | None = None) -> Path:
        """Write a kubeconfig for `user`, CA embedded (copyable anywhere); return its path."""
        path = path or self.workdir / f"kubeconfig-{_safe_name(user)}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(
                            self.ca_file.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": self.token(user)}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user}}],
            "current-context": "envtest",
        }
        with _private(path) as out:
            out.write(yaml.safe_dump(config, sort_keys=False))
        return path

    # ---- lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and wait until it is ready; on failure stop what started and raise."""
        try:
            assets = self._resolve_assets()
            self._prepare_files()
            self._start_etcd(assets)
            self._children["kube-apiserver"] = _Child(
                "kube-apiserver",
                self._apiserver_argv(assets),
                self.workdir / "kube-apiserver.log",
                grace=APISERVER_STOP_GRACE,
            )
            self.start_apiserver()
            self.write_kubeconfig(ADMIN_USER, self.kubeconfig)
            if self._want_controller_manager:
                assert assets.kube_controller_manager is not None
                self._start_controller_manager(assets.kube_controller_manager)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop all processes (controller-manager, apiserver, etcd), then drop etcd's data."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            if name in self._children:
                self._children[name].stop()
        shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        """The running processes by name (etcd, kube-apiserver, kube-controller-manager)."""
        return {name: pid for name, child in self._children.items()
                if (pid := child.pid) is not None}

    def stop_apiserver(self) -> None:
        self._children["kube-apiserver"].stop()

    def start_apiserver(self) -> None:
        """Start kube-apiserver (same ports, certificates and etcd) and wait until /readyz is ok."""
        child = self._children["kube-apiserver"]
        child.start()
        # /readyz answers plain text ("ok"), not JSON: probe it with urllib3, like etcd's /health.
        probe = urllib3.PoolManager(
            retries=False, timeout=5.0, cert_reqs="CERT_REQUIRED", ca_certs=str(self.ca_file)
        )
        headers = {"Authorization": f"Bearer {self.admin_token}", "User-Agent": "ssa-envtest"}
        try:
            _wait_ready(
                child,
                lambda: probe.request("GET", f"{self.url}/readyz", headers=headers).status == 200,
                "kube-apiserver /readyz",
            )
        finally:
            probe.clear()

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    # ---- etcd

    def _etcdctl(self, *args: str) -> str:
        etcdctl = shutil.which("etcdctl")
        if etcdctl is None:
            raise ControlPlaneError("etcdctl is needed: apt-get install -y etcd-client")
        result = subprocess.run(
            [etcdctl, f"--endpoints={self.etcd_url}", *args],
            env={**os.environ, "ETCDCTL_API": "3"},
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT,
        )
        if result.returncode != 0:
            raise ControlPlaneError(
                f"etcdctl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout

    def etcd_revision(self) -> int:
        """etcd's current revision (the newest resourceVersion of anything stored)."""
        status = json.loads(self._etcdctl("endpoint", "status", "--write-out=json"))
        return int(status[0]["Status"]["header"]["revision"])

    def compact(self) -> int:
        """Compact etcd's history up to its current revision and return that revision: a watch
        from any older resourceVersion then answers 410 Gone (at once with watch_cache=False)."""
        revision = self.etcd_revision()
        self._etcdctl("compact", str(revision), "--physical")
        return revision

    # ---- internals

    def _resolve_assets(self) -> Assets:
        assets = self._assets or find_assets()
        if assets is None:
            raise AssetsError(
                "no etcd / kube-apiserver binaries found: run "
                "`python -m ssa_controller.envtest install` or set KUBEBUILDER_ASSETS"
            )
        if self._want_controller_manager and assets.kube_controller_manager is None:
            raise AssetsError(
                "no kube-controller-manager binary: set TEST_ASSET_KUBE_CONTROLLER_MANAGER "
                "or run `python -m ssa_controller.envtest install`"
            )
        return assets

    def _prepare_files(self) -> None:
        """The work folder (for this user only: it holds tokens, keys and kubeconfigs) and the
        files the processes read."""
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.cert_dir.mkdir(mode=0o700, exist_ok=True)
        _write_tokens(self.workdir / "tokens.csv", self._tokens, self._groups)
        (self.workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        self._make_service_account_key(self.workdir / "sa.key")

    @staticmethod
    def _make_service_account_key(path: Path) -> None:
        if path.exists():
            path.chmod(0o600)
            return
        if shutil.which("openssl") is None:
            raise ControlPlaneError(
                "openssl is needed for the service-account key: apt-get install -y openssl"
            )
        with _private(path):  # the key is written into a file only this user may read
            pass
        subprocess.run(
            ["openssl", "genrsa", "-out", str(path), "2048"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _start_etcd(self, assets: Assets) -> None:
        flags = {
            "--data-dir": self.workdir / "etcd-data",
            "--listen-client-urls": self.etcd_url,
            "--advertise-client-urls": self.etcd_url,
            "--listen-peer-urls": self._peer_url,
            "--initial-advertise-peer-urls": self._peer_url,
            "--initial-cluster": f"default={self._peer_url}",
        }
        child = _Child("etcd", _argv(assets.etcd, flags), self.workdir / "etcd.log")
        self._children["etcd"] = child
        child.start()
        probe = urllib3.PoolManager(retries=False, timeout=2.0)
        try:
            _wait_ready(
                child,
                lambda: b'"true"' in probe.request("GET", f"{self.etcd_url}/health").data,
                "etcd /health",
            )
        finally:
            probe.clear()

    def _apiserver_argv(self, assets: Assets) -> list[str]:
        work = self.workdir
        flags = {
            "--etcd-servers": self.etcd_url,
            "--cert-dir": self.cert_dir,
            "--secure-port": self.port,
            "--bind-address": "127.0.0.1",
            "--advertise-address": "127.0.0.1",
            "--service-cluster-ip-range": "10.0.0.0/16",  # a /24 ran out at 1,000 Services
            "--endpoint-reconciler-type": "none",
            "--token-auth-file": work / "tokens.csv",
            "--authorization-mode": "RBAC",
            "--service-account-key-file": work / "sa.key",
            "--service-account-signing-key-file": work / "sa.key",
            "--service-account-issuer": "https://kubernetes.default.svc",
            "--audit-log-path": self.audit_log_path,
            "--audit-policy-file": work / "audit-policy.yaml",
            "--audit-log-mode": "blocking",
            "--audit-log-maxsize": 1_000_000,  # MB: never rotate, so offsets stay valid
        }
        if not self._watch_cache:
            flags["--watch-cache"] = "false"
        return [*_argv(assets.kube_apiserver, flags), *self._apiserver_args]

    def _start_controller_manager(self, binary: Path) -> None:
        kubeconfig = self.write_kubeconfig(CONTROLLER_MANAGER_USER)
        flags = {
            "--kubeconfig": kubeconfig,
            "--authentication-kubeconfig": kubeconfig,
            "--authorization-kubeconfig": kubeconfig,
            "--bind-address": "127.0.0.1",
            "--secure-port": 0,
            "--port": 0,
            "--leader-elect": "false",
            "--service-account-private-key-file": self.workdir / "sa.key",
            "--root-ca-file": self.ca_file,
            "--controllers": self._controllers,
            # A test cluster on loopback: no need for client-go's 20 qps, and benchmarks of
            # thousands of Deployments should measure the controller, not this throttle.
            "--kube-api-qps": 500,
            "--kube-api-burst": 1000,
            "--concurrent-deployment-syncs": 20,
            "--concurrent-replicaset-syncs": 20,
            "--concurrent-gc-syncs": 40,
        }
        log_path = self.workdir / "kube-controller-manager.log"
        child = _Child("kube-controller-manager", _argv(binary, flags), log_path)
        self._children["kube-controller-manager"] = child
        child.start()
        admin = self.client()
        try:
            _wait_ready(
                child,
                lambda: self._default_service_account_ready(admin),
                "kube-controller-manager: a token for serviceaccount default/default",
            )
        finally:
            admin.close()

    @staticmethod
    def _default_service_account_ready(admin: Kube) -> bool:
        """In v1.20 pods can be created once the namespace's default service account has a token."""
        account: dict[str, Any] = admin.get("/api/v1/namespaces/default/serviceaccounts/default")
        return bool(account.get("secrets"))
