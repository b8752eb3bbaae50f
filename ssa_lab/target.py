"""Where the lab runs: the embedded control plane (`--local`) or a given cluster (`--kubeconfig`).

On the local control plane every role has its own user, so the audit log tells the bad
controller, this controller, its second replica and the lab's own load apart. A given cluster
gives the lab one identity and, usually, no access to the API server's audit log: there the
figures that need it are reported as not measured (only the Deployment generation, the
convergence checks and /proc figures are), and `ssa-controller lab --local` measures them all.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ssa_controller import crds
from ssa_controller.client.kube import Kube
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import assets
from ssa_controller.envtest.audit import AuditLog
from ssa_controller.envtest.controlplane import MASTERS, ControlPlane
from ssa_controller.envtest.podsim import PodSimulator
from ssa_controller.envtest.polling import poll_until

log = logging.getLogger(__name__)
ROLES = ("bad", "bad-2", "ours", "ours-2", "driver")
"""bad and ours run the controllers (the -2 their second replicas); driver is the lab itself."""


class Target:
    """A cluster to run scenarios on, with a kubeconfig and a client per role."""

    def __init__(self, workdir: Path, kubeconfigs: dict[str, Path], audit: AuditLog | None,
                 users: dict[str, str]) -> None:
        self.workdir = workdir
        self._kubeconfigs = kubeconfigs
        self.audit = audit
        self.users = users
        self._clients: dict[str, Kube] = {}

    def kubeconfig(self, role: str) -> Path:
        return self._kubeconfigs[role]

    def client(self, role: str = "driver") -> Kube:
        if role not in self._clients:
            self._clients[role] = Kube.from_kubeconfig(
                str(self._kubeconfigs[role]), user_agent=f"ssa-lab/{role}", request_timeout=30.0)
        return self._clients[role]

    def user(self, role: str) -> str | None:
        """The audit log's user name of a role (None: roles share one identity)."""
        return self.users.get(role)

    @contextlib.contextmanager
    def namespace(self, stem: str) -> Iterator[str]:
        """A fresh namespace, ready for pods, deleted (without waiting) afterwards."""
        name = f"lab-{stem}-{secrets.token_hex(3)}"
        kube = self.client()
        kube.create("/api/v1/namespaces", {"metadata": {"name": name,
                                                        "labels": {"ssa-controller.dev/lab": "1"}}})
        try:
            poll_until(lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
                       .get("secrets"), timeout=30, message=f"namespace {name} ready",
                       ignore=(ApiError,))
            yield name
        finally:
            try:
                kube.delete(f"/api/v1/namespaces/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("could not delete namespace %s: %s", name, exc)

    def close(self) -> None:
        for kube in self._clients.values():
            kube.close()


@contextlib.contextmanager
def local() -> Iterator[Target]:
    """The embedded control plane (etcd, kube-apiserver, kube-controller-manager, pod simulator)
    with one admin user per role, the AppTask CRD installed."""
    found = assets.install(log=log.info)
    users = {role: f"lab-{role}" for role in ROLES}
    with tempfile.TemporaryDirectory(prefix="ssa-lab-") as tmp, ControlPlane(
            Path(tmp) / "plane", controller_manager=True, assets=found,
            users={user: (MASTERS,) for user in users.values()}) as plane:
        simulator = PodSimulator(plane.url, plane.admin_token, str(plane.ca_file))
        simulator.start()
        kubeconfigs = {role: plane.write_kubeconfig(user) for role, user in users.items()}
        target = Target(Path(tmp), kubeconfigs, plane.audit, users)
        try:
            crds.install(target.client())
            yield target
        finally:
            target.close()
            simulator.stop()


@contextlib.contextmanager
def given(kubeconfig: str) -> Iterator[Target]:
    """A cluster from a kubeconfig: one identity for every role, no audit log."""
    path = Path(kubeconfig).expanduser().resolve()
    with tempfile.TemporaryDirectory(prefix="ssa-lab-") as tmp:
        target = Target(Path(tmp), dict.fromkeys(ROLES, path), None, {})
        try:
            crds.install(target.client())
            yield target
        finally:
            target.close()
