"""The controller run as the manifests run it in a pod: no kubeconfig, the in-cluster credentials
of the ServiceAccount in manifests/serviceaccount.yaml (a TokenRequest token and the API server's
CA in a service-account directory, KUBERNETES_SERVICE_HOST / _PORT), the ConfigMap's
controller.yaml, and exactly the RBAC of manifests/rbac.yaml."""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path
from typing import Any

import yaml
from helpers import (
    CONTROLLER_NAMESPACE,
    MANIFESTS,
    apply_rbac,
    apptask,
    container,
    get_deployment,
    put_apptask,
    rbac_objects,
    status_of,
)

from ssa_controller.client.credentials import SERVICE_ACCOUNT_DIR_ENV
from ssa_controller.client.kube import Kube
from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.serving.servingcert import self_signed_pem

SERVICE_ACCOUNT = "ssa-controller"
SERVICE_ACCOUNT_USER = f"system:serviceaccount:{CONTROLLER_NAMESPACE}:{SERVICE_ACCOUNT}"
CONVERGE_TIMEOUT = 60.0
"""Covers taking the manifests' Lease (at most one lease duration, 15 s, if a stale holder is
left) plus a reconcile and the simulated pods becoming ready."""


def manifest(name: str) -> list[dict[str, Any]]:
    return [obj for obj in yaml.safe_load_all((MANIFESTS / name).read_text()) if obj]


def configmap_config(cert_dir: Path) -> dict[str, Any]:
    """controller.yaml from manifests/configmap.yaml, without the server's bind address and
    ports (0.0.0.0:8080/8081 in a pod): the test's free loopback ports take their place; the
    metrics certificate is read from `cert_dir` (in a pod: the mounted Secret)."""
    (configmap,) = manifest("configmap.yaml")
    config = yaml.safe_load(configmap["data"]["controller.yaml"])
    for key in ("bindAddress", "metricsPort", "healthPort"):
        config.get("server", {}).pop(key, None)
    assert config["server"]["metricsCertDir"]
    config["server"]["metricsCertDir"] = str(cert_dir)
    return config


def metrics_certificate(tmp_path: Path) -> Path:
    """A folder holding tls.crt and tls.key, as the metrics certificate's Secret is mounted."""
    folder = tmp_path / "metrics-cert"
    folder.mkdir()
    cert, key = self_signed_pem(["ssa-controller-metrics.ssa-controller-system.svc"],
                                datetime.datetime.now(datetime.UTC))
    (folder / "tls.crt").write_bytes(cert)
    (folder / "tls.key").write_bytes(key)
    return folder


def apply_service_account(admin: Kube) -> None:
    """manifests/serviceaccount.yaml, and manifests/rbac.yaml (whose bindings name it) again, in
    case an earlier test changed it."""
    (account,) = manifest("serviceaccount.yaml")
    assert (account["metadata"]["namespace"], account["metadata"]["name"]) == (
        CONTROLLER_NAMESPACE, SERVICE_ACCOUNT)
    admin.apply(f"/api/v1/namespaces/{CONTROLLER_NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}",
                account, field_manager="tests", force=True)
    apply_rbac(admin, rbac_objects())


def request_token(admin: Kube) -> str:
    """A bound token for the ServiceAccount, from the TokenRequest API (as the kubelet gets it)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}}
    path = f"/api/v1/namespaces/{CONTROLLER_NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token"
    return str(admin.create(path, body)["status"]["token"])


def pod_environment(cluster: ControlPlane, admin: Kube, tmp_path: Path) -> dict[str, str | None]:
    """What the kubelet gives the controller's container: the service-account files and the
    service's address; no kubeconfig anywhere (KUBECONFIG unset, HOME without ~/.kube)."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(request_token(admin))
    (directory / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    (directory / "namespace").write_text(CONTROLLER_NAMESPACE)
    home = tmp_path / "home"
    home.mkdir()
    return {SERVICE_ACCOUNT_DIR_ENV: str(directory), "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(cluster.port), "KUBECONFIG": None, "HOME": str(home)}


def test_the_controller_runs_with_in_cluster_credentials_and_the_manifests_rbac(
        admin, controller, namespace, cluster, tmp_path) -> None:
    apply_service_account(admin)
    mark = cluster.audit.mark()
    env = pod_environment(cluster, admin, tmp_path)
    process = controller(configmap_config(metrics_certificate(tmp_path)), user=None, env=env)
    name = f"incluster-{secrets.token_hex(3)}"
    put_apptask(admin, apptask(name, namespace, replicas=1, image="nginx:1.25"))

    deployment = poll_until(lambda: get_deployment(admin, namespace, name),
                            timeout=CONVERGE_TIMEOUT, message="the Deployment")
    assert container(deployment)["image"] == "nginx:1.25"
    assert deployment["metadata"]["ownerReferences"][0]["name"] == name
    poll_until(lambda: status_of(admin, namespace, name).get("phase") == "Ready",
               timeout=CONVERGE_TIMEOUT, message="AppTask phase Ready")

    writes = cluster.audit.select(mark, resource="deployments", namespace=namespace, name=name,
                                  writes=True)
    applies = [e for e in writes if e.subresource is None]  # not kube-controller-manager's status
    assert applies and {e.user for e in applies} == {SERVICE_ACCOUNT_USER}
    # 403s elsewhere can be other tests' namespaces being deleted: this controller watches all
    refused = [e for e in cluster.audit.select(mark, user=SERVICE_ACCOUNT_USER) if e.code == 401
               or e.code == 403 and e.namespace in (None, namespace, CONTROLLER_NAMESPACE)]
    assert not refused, f"the controller was refused: {refused}"
    assert f"API server https://127.0.0.1:{cluster.port} (the in-cluster service account " \
        in process.log()
    assert process.stop() == 0, process.log()[-3000:]
