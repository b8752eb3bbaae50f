"""The local control plane itself: version, Deployment to ready Pods, restart, audit, RBAC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from ssa_controller.client.wire import MERGE_PATCH
from ssa_controller.envtest import ADMIN_USER, ApiError, ControlPlane, Kube, poll_until

DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
CONFIGMAPS = "/api/v1/namespaces/{ns}/configmaps"


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def wait_ready(admin: Kube, namespace: str, name: str, replicas: int) -> dict[str, Any]:
    path = f"{DEPLOYMENTS.format(ns=namespace)}/{name}"

    def ready() -> dict[str, Any] | None:
        found = admin.get(path)
        status = found.get("status", {})
        done = status.get("readyReplicas") == replicas and status.get("replicas") == replicas
        return found if done else None

    return poll_until(
        ready, timeout=60, message=f"deployment {namespace}/{name} with {replicas} ready replicas"
    )


@pytest.fixture
def admin(control_plane: ControlPlane) -> Iterator[Kube]:
    client = control_plane.client()
    yield client
    client.close()


def test_version_is_v1_20_2(admin: Kube) -> None:
    assert admin.get("/version")["gitVersion"] == "v1.20.2"


def test_kubeconfig_verifies_tls_with_the_official_client(control_plane: ControlPlane) -> None:
    mark = control_plane.audit.mark()
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.write_kubeconfig("alice"))
    )
    try:
        assert api.configuration.verify_ssl
        assert k8s.VersionApi(api).get_code().git_version == "v1.20.2"
    finally:
        api.close()
    assert control_plane.audit.count(mark, user="alice", verb="get") == 1


def test_deployment_gets_replicaset_and_ready_pods(admin: Kube, namespace: str) -> None:
    admin.create(DEPLOYMENTS.format(ns=namespace), deployment("web", 3))
    wait_ready(admin, namespace, "web", 3)

    replicasets = admin.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
    assert [rs["metadata"]["ownerReferences"][0]["name"] for rs in replicasets] == ["web"]
    pods = admin.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"] == "envtest-node"
        assert pod["status"]["phase"] == "Running"
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"


def test_scale_down_deletes_pods(admin: Kube, namespace: str) -> None:
    admin.create(DEPLOYMENTS.format(ns=namespace), deployment("web", 2))
    wait_ready(admin, namespace, "web", 2)
    admin.patch(f"{DEPLOYMENTS.format(ns=namespace)}/web", {"spec": {"replicas": 1}}, MERGE_PATCH)
    wait_ready(admin, namespace, "web", 1)
    poll_until(
        lambda: len(admin.get(f"/api/v1/namespaces/{namespace}/pods")["items"]) == 1,
        timeout=30,
        message="terminated pod removed by the simulator",
    )


def test_apiserver_restart_keeps_objects(
    control_plane: ControlPlane, admin: Kube, namespace: str
) -> None:
    created = admin.create(CONFIGMAPS.format(ns=namespace), configmap("kept"))
    admin.create(DEPLOYMENTS.format(ns=namespace), deployment("web", 1))
    wait_ready(admin, namespace, "web", 1)
    before = control_plane.pids()

    control_plane.restart_apiserver()

    after = control_plane.pids()
    assert set(before) == set(after) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert after["kube-apiserver"] != before["kube-apiserver"]
    assert after["etcd"] == before["etcd"]
    found = admin.get(f"{CONFIGMAPS.format(ns=namespace)}/kept")
    assert found["metadata"]["uid"] == created["metadata"]["uid"]
    # controller-manager and the pod simulator reconnect: scaling up still ends in ready pods
    admin.patch(f"{DEPLOYMENTS.format(ns=namespace)}/web", {"spec": {"replicas": 2}}, MERGE_PATCH)
    wait_ready(admin, namespace, "web", 2)


def test_audit_counts_requests_exactly(
    control_plane: ControlPlane, admin: Kube, namespace: str
) -> None:
    audit = control_plane.audit
    alice = control_plane.client("alice", user_agent="audit-test/1.0")
    mark = audit.mark()

    for _ in range(3):
        alice.get("/version")
    with pytest.raises(ApiError) as refused:
        alice.get(CONFIGMAPS.format(ns=namespace))
    admin.create(CONFIGMAPS.format(ns=namespace), configmap("real"))
    admin.create(CONFIGMAPS.format(ns=namespace), configmap("dry"), params={"dryRun": "All"})
    alice.close()
    # blocking audit mode writes each event before its response goes out; this only guards the read
    poll_until(
        lambda: audit.count(mark, user=ADMIN_USER, namespace=namespace, name="dry") == 1,
        timeout=5,
        message="the last request in the audit log",
    )

    assert refused.value.status == 403
    assert audit.count(mark, user="alice", verb="get") == 3
    assert (
        audit.count(mark, user="alice", verb="list", resource="configmaps", namespace=namespace)
        == 1
    )
    assert audit.count(mark, user_agent="audit-test/") == 4
    assert audit.count(mark, user=ADMIN_USER, writes=True, namespace=namespace) == 2
    assert audit.count(mark, user=ADMIN_USER, writes=True, namespace=namespace, dry_run=False) == 1
    assert audit.count(mark, user=ADMIN_USER, writes=True, namespace=namespace, dry_run=True) == 1
    assert audit.count(mark, user=ADMIN_USER, verbs={"create", "update"}, name="dry") == 1
    [denied] = audit.select(mark, user="alice", resource="configmaps")
    assert denied.code == 403
    summary = audit.summary(mark, user="alice")
    assert summary == {("alice", "get", "/version"): 3, ("alice", "list", "configmaps"): 1}
    assert admin.get(f"{CONFIGMAPS.format(ns=namespace)}/real")
    with pytest.raises(ApiError) as missing:
        admin.get(f"{CONFIGMAPS.format(ns=namespace)}/dry")
    assert missing.value.status == 404


def test_rbac_refuses_then_allows_after_rolebinding(
    control_plane: ControlPlane, admin: Kube, namespace: str
) -> None:
    bob = control_plane.client("bob")
    with pytest.raises(ApiError) as refused:
        bob.get(CONFIGMAPS.format(ns=namespace))
    assert refused.value.status == 403

    admin.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "read-cm"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    admin.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "bob"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}],
        },
    )
    listed = poll_until(
        lambda: bob.get(CONFIGMAPS.format(ns=namespace)),
        timeout=30,
        message="bob may list configmaps",
        ignore=(ApiError,),
    )
    assert listed["kind"] == "ConfigMapList"
    with pytest.raises(ApiError) as still_refused:
        bob.create(CONFIGMAPS.format(ns=namespace), configmap("nope"))
    assert still_refused.value.status == 403
    bob.close()
