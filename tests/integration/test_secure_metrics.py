"""Secure metrics against the real API server: the controller serves /metrics over HTTPS only,
and lets in only bearer tokens the API server authenticates (TokenReview) whose user RBAC
allows to get /metrics (SubjectAccessReview), i.e. manifests' metrics-reader ClusterRole.
The controller runs as the test user bound by exactly manifests/rbac.yaml."""

from __future__ import annotations

import pytest
import urllib3
from helpers import CONTROLLER, scoped
from metrics_scrape import (
    SECURE,
    metrics_reader,
    scrape,
    service_account_subject,
    user_subject,
)

from ssa_controller.client.kube import Kube
from ssa_controller.envtest import ControlPlane, poll_until

SCRAPES = 5
REVIEWS = ("tokenreviews", "subjectaccessreviews")


def reviews_since(cluster: ControlPlane, mark: int) -> list[str]:
    """The reviews the controller's identity created since `mark`, sorted."""
    return sorted(e.resource for e in cluster.audit.select(mark, user=CONTROLLER, verb="create")
                  if e.resource in REVIEWS)


def test_metrics_reader_scrapes_others_are_refused(admin: Kube, controller, namespace: str,
                                                   cluster: ControlPlane) -> None:
    with metrics_reader(admin, user_subject("alice")):
        process = controller({**scoped(namespace), **SECURE})
        port = process.metrics_port
        status, text = scrape(port, cluster.token("alice"))
        assert status == 200, text
        assert "# TYPE controller_runtime_reconcile_total counter" in text
        assert scrape(port, cluster.token("bob")) == (403, "Authorization denied for user bob\n")
        assert scrape(port, None) == (401, "Unauthorized\n")
        assert scrape(port, "not-a-token") == (401, "Unauthorized\n")
        with pytest.raises(urllib3.exceptions.HTTPError):  # no plain HTTP on the metrics port
            urllib3.PoolManager(retries=False, timeout=5).request(
                "GET", f"http://127.0.0.1:{port}/metrics")

        # Cached: repeated scrapes within a minute cost no review at all.
        mark = cluster.audit.mark()
        for _ in range(SCRAPES):
            assert scrape(port, cluster.token("alice"))[0] == 200
            assert scrape(port, cluster.token("bob"))[0] == 403
        assert reviews_since(cluster, mark) == []


def test_reviews_are_sent_as_the_controller(admin: Kube, controller, namespace: str,
                                            cluster: ControlPlane) -> None:
    mark = cluster.audit.mark()
    with metrics_reader(admin, user_subject("alice")):
        process = controller({**scoped(namespace), **SECURE})
        assert scrape(process.metrics_port, cluster.token("alice"))[0] == 200
    poll_until(lambda: reviews_since(cluster, mark) == ["subjectaccessreviews", "tokenreviews"],
               timeout=5, message="one TokenReview and one SubjectAccessReview by the controller")


def test_a_service_account_token_scrapes_like_prometheus_in_a_cluster(
        admin: Kube, controller, namespace: str) -> None:
    """What the ServiceMonitor does: Prometheus' service account token, bound to the reader."""
    admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"metadata": {"name": "prometheus"}})
    token = admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/prometheus/token",
                         {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": {"expirationSeconds": 600}})["status"]["token"]
    process = controller({**scoped(namespace), **SECURE})
    assert scrape(process.metrics_port, token) == (
        403, f"Authorization denied for user system:serviceaccount:{namespace}:prometheus\n")
    with metrics_reader(admin, service_account_subject(namespace, "prometheus")):
        other = controller({**scoped(namespace), **SECURE})  # a fresh cache: no cached denial
        status, text = scrape(other.metrics_port, token)
        assert status == 200, text
