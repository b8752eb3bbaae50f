"""The manifests applied to a control plane, and pods of the image started on it as the
Deployment's pods would be (the container's settings come from pod.py's translation; the files
of their ConfigMap and Secret volumes from the objects on the control plane)."""

from __future__ import annotations

import base64
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from pod import PodHost, file_volumes, run_args, service_account
from podman_cli import Podman

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import Resource
from ssa_controller.envtest import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CONFIG_KEY = "controller.yaml"
"""The ConfigMap's key holding the controller's configuration."""
FIELD_MANAGER = "kubectl"
RESOURCES = {
    "Namespace": Resource("v1", "namespaces", namespaced=False),
    "ServiceAccount": Resource("v1", "serviceaccounts"),
    "ClusterRole": Resource("rbac.authorization.k8s.io/v1", "clusterroles", namespaced=False),
    "ClusterRoleBinding": Resource("rbac.authorization.k8s.io/v1", "clusterrolebindings",
                                   namespaced=False),
    "Role": Resource("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Resource("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Secret": Resource("v1", "secrets"),
}
"""The kinds of the manifests the tests apply (the CRD goes through crds.install)."""


def manifest(name: str) -> list[dict[str, Any]]:
    """The objects of manifests/NAME."""
    return [obj for obj in yaml.safe_load_all((MANIFESTS / name).read_text()) if obj]


def apply(admin: Kube, objects: list[dict[str, Any]]) -> None:
    """Server-side apply, as `kubectl apply --server-side` does."""
    for obj in objects:
        path = RESOURCES[obj["kind"]].path(obj["metadata"].get("namespace"),
                                           obj["metadata"]["name"])
        admin.apply(path, obj, field_manager=FIELD_MANAGER, force=True)


def token(admin: Kube, namespace: str, account: str) -> str:
    """A bound token of the ServiceAccount from the TokenRequest API, as the kubelet gets it."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}}
    path = RESOURCES["ServiceAccount"].path(namespace, account, "token")
    return str(admin.create(path, body)["status"]["token"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Image:
    tag: str
    revision: str
    """The git revision it was built from (its REVISION build argument)."""


@dataclass(frozen=True)
class Deployed:
    """A control plane with the manifests applied, and the manifests the pods are made from."""

    plane: ControlPlane
    admin: Kube
    deployment: dict[str, Any]
    configmap: dict[str, Any]
    scraper_token: str
    """A token of the ServiceAccount manifests/monitoring binds to the metrics-reader role."""
    metrics_ca: Path
    """The CA of the metrics certificate's Secret, which the ServiceMonitor verifies."""
    metrics_server_name: str
    """The name the ServiceMonitor verifies the metrics certificate for."""

    @property
    def namespace(self) -> str:
        return str(self.deployment["metadata"]["namespace"])

    def config(self) -> dict[str, Any]:
        """The ConfigMap's controller.yaml, as written."""
        found: dict[str, Any] = yaml.safe_load(self.configmap["data"][CONFIG_KEY])
        return found


class Pod:
    """One container of the image, run as a pod of the Deployment would be. With host networking
    the ConfigMap's ports would clash (two pods, other processes): its controller.yaml is mounted
    with free loopback ports instead (`health_port`, `metrics_port`)."""

    def __init__(self, podman: Podman, deployed: Deployed, workdir: Path) -> None:
        self.podman = podman
        self.deployed = deployed
        self.workdir = workdir
        self.name = f"ssa-controller-test-{secrets.token_hex(4)}"
        self.health_port, self.metrics_port = free_port(), free_port()
        self._http = urllib3.PoolManager(retries=False, timeout=5.0)

    def _files(self, kind: str, name: str) -> dict[str, bytes]:
        """The keys of the ConfigMap (manifests/', its controller.yaml on this pod's ports) or
        the Secret (from the control plane) a volume mounts, as the kubelet writes them."""
        deployed = self.deployed
        if kind == "Secret":
            secret = deployed.admin.get(RESOURCES[kind].path(deployed.namespace, name))
            return {key: base64.b64decode(value) for key, value in secret["data"].items()}
        assert name == deployed.configmap["metadata"]["name"], \
            f"the pod mounts ConfigMap {name}, which manifests/ does not hold"
        config = deployed.config()
        config["server"] = {**config["server"], "bindAddress": "127.0.0.1",
                            "healthPort": self.health_port, "metricsPort": self.metrics_port}
        data = {**deployed.configmap["data"], CONFIG_KEY: yaml.safe_dump(config)}
        return {key: content.encode() for key, content in data.items()}

    def start(self, image: Image) -> None:
        """Write the pod's files as the kubelet would (the keys of its ConfigMap and Secret
        volumes, the service account's token, CA and namespace), then start the container."""
        deployed, deployment = self.deployed, self.deployed.deployment
        volume_dirs = {}
        for volume, (kind, name) in file_volumes(deployment).items():
            volume_dirs[volume] = self.workdir / volume
            volume_dirs[volume].mkdir()
            for key, content in self._files(kind, name).items():
                (volume_dirs[volume] / key).write_bytes(content)
        account_dir = self.workdir / "serviceaccount"
        account_dir.mkdir()
        account = service_account(deployment)
        if account is not None:
            (account_dir / "token").write_text(token(deployed.admin, deployed.namespace, account))
            (account_dir / "ca.crt").write_bytes(deployed.plane.ca_file.read_bytes())
            (account_dir / "namespace").write_text(deployed.namespace)
        host = PodHost(self.name, deployed.namespace, "127.0.0.1", deployed.plane.port,
                       account_dir, volume_dirs)
        self.podman.run(run_args(deployment, host, image.tag))

    def get(self, path: str) -> tuple[int, str]:
        """GET http://127.0.0.1:<health port><path>."""
        response = self._http.request("GET", f"http://127.0.0.1:{self.health_port}{path}")
        return response.status, response.data.decode()

    def scrape(self, bearer: str | None) -> tuple[int, str]:
        """GET /metrics over HTTPS as the ServiceMonitor has Prometheus do it: the certificate
        verified against the Secret's CA, for the ServiceMonitor's server name."""
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(
            self.deployed.metrics_ca), server_hostname=self.deployed.metrics_server_name,
            retries=False, timeout=5.0)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            response = http.request("GET", f"https://127.0.0.1:{self.metrics_port}/metrics",
                                    headers=headers)
            return response.status, response.data.decode()
        finally:
            http.clear()

    def stop(self, timeout: float) -> int:
        """`podman stop` (SIGTERM, then SIGKILL after the pod's grace period); the exit code."""
        self.podman("stop", self.name, timeout=timeout)
        return int(self.podman.inspect(self.name)["State"]["ExitCode"])

    def log(self) -> str:
        return self.podman.logs(self.name)
