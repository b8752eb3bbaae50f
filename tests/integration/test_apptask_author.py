"""What an AppTask author can obtain (issue 26, items 1 and 2), against the real API server.

- The CRD bounds every list, map and string of the spec: the server refuses an oversized AppTask
  (422) before the controller sees it, and admits one at every bound.
- A spec the server admits but whose Deployment it refuses with a message longer than a
  condition holds (256 invalid env names: over 100 KB) still gets its status written, the
  message cut to 32768 bytes (before: the status patch failed for ever).
- A user who may only create AppTasks in one namespace gets no more than a Deployment meeting
  the Pod Security Standard "restricted" could give: its pods mount no service-account token,
  run non-root without privilege escalation or capabilities (checked on the pods the server
  made with ssa_controller.envtest.podsecurity, since v1.20.2 has no PodSecurity admission to
  enforce the namespace's `pod-security.kubernetes.io/enforce: restricted` label), and cannot
  join a Service selecting the recommended labels or ask a mesh for a sidecar (InvalidSpec); the
  schema refuses host namespaces (422) and the admission rules running as root and privileged
  containers (InvalidSpec naming the field), while another ServiceAccount of its namespace gets
  no token either.
- AppTasks in kube-* namespaces and in the controller's own are ignored: no request, no status.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import (
    CONTROLLER,
    CONTROLLER_NAMESPACE,
    apptask,
    condition,
    get_deployment,
    scoped,
    status_of,
)

from ssa_controller.apptask.status import MESSAGE_LIMIT
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.envtest.podsecurity import restricted_violations

RBAC = "/apis/rbac.authorization.k8s.io/v1"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CHART_LABELS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
"""What a Helm chart's Service selects its pods by."""

AT_BOUNDS: dict[str, Any] = {
    "image": "r.example.com/" + "i" * 1010,
    "command": ["c" * 4096] * 128,
    "args": ["a" * 4096] + ["-v"] * 127,
    "env": [{"name": f"V{i:03}" + "n" * 252, "value": "v" * 4096 if i < 8 else "1"}
            for i in range(256)],
    "ports": [{"containerPort": 1000 + i, "name": f"p{i}"} for i in range(64)],
    "resources": {"requests": {f"example.com/r{i}": "1" for i in range(16)},
                  "limits": {"memory": "1" * 64}},
    "labels": {f"l{i}": "v" * 63 for i in range(64)},
    "annotations": {f"a{i}": "v" * 4096 for i in range(8)},
}
"""A spec at every bound of manifests/crd.yaml at once (8 long annotations and env values:
all 64 would pass the API server's 3 MB request limit)."""

BEYOND: dict[str, tuple[str, Any]] = {
    "image": ("image", "i" * 1025),
    "command": ("command", ["c"] * 129),
    "a command word": ("command", ["c" * 4097]),
    "args": ("args", ["a"] * 129),
    "an argument": ("args", ["a" * 4097]),
    "env": ("env", [{"name": f"V{i}"} for i in range(257)]),
    "an env name": ("env", [{"name": "n" * 257}]),
    "an env value": ("env", [{"name": "V", "value": "v" * 4097}]),
    "ports": ("ports", [{"containerPort": 1000 + i} for i in range(65)]),
    "requests": ("resources", {"requests": {f"example.com/r{i}": "1" for i in range(17)}}),
    "a limit": ("resources", {"limits": {"memory": "1" * 65}}),
    "labels": ("labels", {f"l{i}": "v" for i in range(65)}),
    "a label value": ("labels", {"l": "v" * 64}),
    "annotations": ("annotations", {f"a{i}": "v" for i in range(65)}),
    "an annotation": ("annotations", {"a": "v" * 4097}),
}


def create(kube: Kube, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    meta = obj["metadata"]
    return kube.create(APPTASKS.path(meta["namespace"]), obj,
                       {"dryRun": "All"} if dry_run else None)


def test_an_apptask_at_every_bound_is_admitted(admin: Kube, namespace: str) -> None:
    created = create(admin, apptask("at-bounds", namespace, **AT_BOUNDS), dry_run=True)
    assert len(created["spec"]["env"]) == 256


@pytest.mark.parametrize("what", sorted(BEYOND))
def test_an_apptask_beyond_a_bound_is_refused_by_the_server(admin: Kube, namespace: str,
                                                           what: str) -> None:
    field, value = BEYOND[what]
    with pytest.raises(ApiError) as refused:
        create(admin, apptask("beyond", namespace, **{field: value}))
    assert refused.value.status == 422, refused.value
    assert f"spec.{field}" in refused.value.message


def test_a_refusal_longer_than_a_condition_holds_is_written_cut(
        admin: Kube, controller, namespace: str, cluster: ControlPlane) -> None:
    """256 env names the Deployment's validation refuses: the server's 422 lists each (over
    100 KB); the status patch carrying it whole was refused (maxLength 32768) for ever."""
    env = [{"name": f"bad name {i:03} " + "x" * 240} for i in range(256)]
    create(admin, apptask("loud", namespace, env=env))
    mark = cluster.audit.mark()
    controller(scoped(namespace))
    status = poll_until(lambda: (s := status_of(admin, namespace, "loud")).get("phase") and s,
                        timeout=30, message="a status for the AppTask")
    synced = condition(status, "Synced")
    assert (status["phase"], synced["reason"]) == ("Invalid", "ApplyRejected")
    message = synced["message"].encode()
    assert len(message) == MESSAGE_LIMIT, len(message)
    assert message.startswith(b'Deployment.apps "loud" is invalid: ')
    status_writes = [e.code for e in cluster.audit.select(
        mark, user=CONTROLLER, resource="apptasks", subresource="status", namespace=namespace)]
    assert status_writes and all(code == 200 for code in status_writes), status_writes


# --------------------------------------------------------------------------- a namespace's author


def service(namespace: str, name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name,
                                                               "namespace": namespace},
            "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]}}


def endpoint_addresses(admin: Kube, namespace: str, name: str) -> list[str]:
    endpoints = admin.get(f"/api/v1/namespaces/{namespace}/endpoints/{name}")
    return [a["ip"] for subset in endpoints.get("subsets") or () for a in subset["addresses"]]


def pods_of(admin: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = admin.list(
        f"/api/v1/namespaces/{namespace}/pods",
        {"labelSelector": f"apptasks.example.com/name={name}"})["items"]
    return pods


def may_only_write_apptasks(admin: Kube, namespace: str, user: str) -> None:
    """A Role in `namespace` letting `user` manage AppTasks there, and nothing else."""
    admin.create(f"{RBAC}/namespaces/{namespace}/roles", {
        "metadata": {"name": "apptask-author"},
        "rules": [{"apiGroups": ["example.com"], "resources": ["apptasks"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]})
    admin.create(f"{RBAC}/namespaces/{namespace}/rolebindings", {
        "metadata": {"name": "apptask-author"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "apptask-author"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def test_an_apptask_author_gets_no_more_than_a_restricted_deployment(
        admin: Kube, controller, namespace: str, cluster: ControlPlane) -> None:
    admin.patch(f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}}, MERGE_PATCH)
    may_only_write_apptasks(admin, namespace, "alice")
    admin.create(f"/api/v1/namespaces/{namespace}/services",
                 service(namespace, "chart", CHART_LABELS))
    admin.create(f"/api/v1/namespaces/{namespace}/services",
                 service(namespace, "own", {"apptasks.example.com/name": "web"}))
    alice = cluster.client("alice")
    try:
        with pytest.raises(ApiError) as refused:  # the Role gives AppTasks only
            alice.create(DEPLOYMENTS.path(namespace), {"metadata": {"name": "direct"}})
        assert refused.value.status == 403
        create(alice, apptask("web", namespace, labels={"tier": "web"},
                              ports=[{"name": "http", "containerPort": 8080}]))
        create(alice, apptask("hijack", namespace, labels=CHART_LABELS))
        create(alice, apptask("sidecar", namespace,
                              annotations={"sidecar.istio.io/inject": "true"}))
        with pytest.raises(ApiError) as host:  # the schema has no host namespaces to ask for
            create(alice, apptask("host", namespace, hostNetwork=True))
        assert host.value.status == 422 and "spec.hostNetwork" in str(host.value), host.value
        create(alice, apptask("root", namespace, securityContext={"runAsUser": 0}))
        create(alice, apptask("privileged", namespace, securityContext={"privileged": True}))
        create(alice, apptask("account", namespace, serviceAccountName="default"))
    finally:
        alice.close()
    controller(scoped(namespace))

    for name, key in (("hijack", "app.kubernetes.io/instance"),
                      ("sidecar", "sidecar.istio.io/inject"),
                      ("root", "securityContext.runAsUser"),
                      ("privileged", "securityContext.privileged")):
        status = poll_until(lambda n=name: (s := status_of(admin, namespace, n))
                            .get("phase") == "Invalid" and s, timeout=30,
                            message=f"{name} Invalid")
        synced = condition(status, "Synced")
        assert synced["reason"] == "InvalidSpec" and key in synced["message"], synced
        assert get_deployment(admin, namespace, name) is None
    for name in ("web", "account"):
        poll_until(lambda n=name: status_of(admin, namespace, n).get("phase") == "Ready",
                   timeout=60, message=f"{name} Ready")
        pods = pods_of(admin, namespace, name)
        assert pods
        for pod in pods:
            assert restricted_violations(pod) == [], pod["spec"]
            assert pod["spec"]["automountServiceAccountToken"] is False
            assert not any(m["mountPath"].startswith(TOKEN_DIR)
                           for c in pod["spec"]["containers"] for m in c.get("volumeMounts", ())
                           ), pod["spec"]
            assert not pod["spec"].get("hostNetwork")
            assert pod["spec"]["serviceAccountName"] == "default"  # the namespace's, unused
    # The endpoints controller runs: the author's own Service gets the pods of its AppTask...
    web_ips = sorted(p["status"]["podIP"] for p in pods_of(admin, namespace, "web"))
    poll_until(lambda: sorted(endpoint_addresses(admin, namespace, "own")) == web_ips,
               timeout=30, message="the AppTask's own Service has its pods as endpoints")
    # ... and the chart's Service none: no AppTask pod carries its labels.
    assert endpoint_addresses(admin, namespace, "chart") == []


# --------------------------------------------------------------------------- ignored namespaces


@pytest.fixture
def ignored_apptasks(admin: Kube) -> Iterator[list[tuple[str, str]]]:
    """AppTasks in kube-public and in the controller's namespace, deleted after the test."""
    name = f"ignored-{secrets.token_hex(3)}"
    keys = [("kube-public", name), (CONTROLLER_NAMESPACE, name)]
    for namespace, _ in keys:
        create(admin, apptask(name, namespace))
    yield keys
    for namespace, _ in keys:
        admin.delete(APPTASKS.path(namespace, name))


def test_apptasks_in_kube_and_the_controllers_namespaces_are_ignored(
        admin: Kube, controller, namespace: str, cluster: ControlPlane,
        ignored_apptasks: list[tuple[str, str]]) -> None:
    """An AppTask in the controller's namespace labelled like its pods, with a port named
    metrics, would join its metrics Service; one in kube-system, the control plane's."""
    mark = cluster.audit.mark()
    process = controller({"resync": {"period": "1s"}})  # every namespace
    create(admin, apptask("barrier", namespace))
    poll_until(lambda: status_of(admin, namespace, "barrier").get("phase") == "Ready",
               timeout=60, message="the barrier Ready")
    seen = process.reconciles()
    poll_until(lambda: process.reconciles() >= seen + 2, timeout=30, message="two resyncs")
    for ignored_namespace, name in ignored_apptasks:
        assert "status" not in admin.get(APPTASKS.path(ignored_namespace, name))
        assert get_deployment(admin, ignored_namespace, name) is None
        requests = cluster.audit.select(mark, user=CONTROLLER, namespace=ignored_namespace)
        assert [e for e in requests if e.resource != "leases"] == []
