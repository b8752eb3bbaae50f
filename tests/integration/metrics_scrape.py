"""Scraping the controller's secure /metrics as Prometheus does (HTTPS, a bearer token, the
self-signed certificate not verified), and test users bound to manifests' metrics-reader."""

from __future__ import annotations

import contextlib
import secrets
import warnings
from collections.abc import Iterator

import urllib3

from ssa_controller.envtest import poll_until
from ssa_controller.kube import Kube

METRICS_READER = "ssa-controller-metrics-reader"
CLUSTER_ROLE_BINDINGS = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
SECURE = {"server": {"secureMetrics": True}}
"""The config fragment that turns secure metrics on for a test's controller process."""

def scrape(port: int, token: str | None, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of GET https://127.0.0.1:port/metrics with `token` as bearer, if any."""
    http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with warnings.catch_warnings():  # the self-signed certificate is not verified: on purpose
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response = http.request("GET", f"https://127.0.0.1:{port}/metrics", headers=headers)
        return response.status, response.data.decode()
    finally:
        http.clear()


def samples(text: str) -> dict[str, float]:
    """The samples of a text exposition as {'name{labels}': value}."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def user_subject(name: str) -> dict[str, str]:
    """An RBAC subject: a user of the control plane's token file."""
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def service_account_subject(namespace: str, name: str) -> dict[str, str]:
    """An RBAC subject: a service account (what Prometheus scrapes as in a cluster)."""
    return {"kind": "ServiceAccount", "namespace": namespace, "name": name}


def username(subject: dict[str, str]) -> str:
    if subject["kind"] == "ServiceAccount":
        return f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    return subject["name"]


def may_read_metrics(admin: Kube, name: str) -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": name, "nonResourceAttributes": {"path": "/metrics",
                                                               "verb": "get"}}}
    return bool(admin.create(SAR_PATH, review)["status"].get("allowed"))


@contextlib.contextmanager
def metrics_reader(admin: Kube, subject: dict[str, str]) -> Iterator[None]:
    """`subject` bound to the metrics-reader ClusterRole of manifests/rbac.yaml for the block."""
    name = f"test-metrics-reader-{secrets.token_hex(4)}"
    admin.create(CLUSTER_ROLE_BINDINGS, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": METRICS_READER},
        "subjects": [subject]})
    try:
        poll_until(lambda: may_read_metrics(admin, username(subject)), timeout=10,
                   message=f"{username(subject)} bound to {METRICS_READER}")
        yield
    finally:
        admin.delete(f"{CLUSTER_ROLE_BINDINGS}/{name}")
