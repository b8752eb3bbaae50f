"""Scraping the controller's secure /metrics as Prometheus does (HTTPS, a bearer token, the
self-signed certificate not verified), test users bound to manifests' metrics-reader, and a
metrics certificate issued by a CA of the test's own, as cert-manager issues it in a cluster."""

from __future__ import annotations

import contextlib
import datetime
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import urllib3

from ssa_controller.client.kube import Kube
from ssa_controller.envtest import poll_until

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


def issue_certificate(folder: Path, server_name: str) -> Path:
    """tls.crt and tls.key in `folder` for `server_name`, issued by a new CA (as cert-manager
    writes the metrics certificate's Secret, manifests/cert-manager); returns the CA's file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                    signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(server_name)]), critical=False).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test-metrics-ca", ca_key, "test-metrics-ca", ca_key, ca=True)
    leaf = certificate(server_name, key, "test-metrics-ca", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.crt").write_bytes(leaf.public_bytes(pem))
    (folder / "tls.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    return folder / "ca.crt"


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
