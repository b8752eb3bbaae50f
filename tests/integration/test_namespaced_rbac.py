"""What a stolen controller token reaches with manifests/namespaced (issue 26.5), against the real
API server's RBAC authorizer.

The component's RBAC (manifests/ built with it, as a user's overlay builds it) is applied for a
stand-in of the controller's ServiceAccount, the test user "bob" (the session's cluster binds
the real ServiceAccount cluster-wide with the base manifests), its watched namespace the test's
own and its Lease the test's: SubjectAccessReviews show that bob may create and patch
Deployments in the watched namespace and nowhere else, and may renew no other Lease; and the
controller running as bob with exactly that RBAC reconciles an AppTask (leader election on).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    CONTROLLER_NAMESPACE,
    MANIFESTS,
    SHARDING_ROLES,
    apptask,
    put_apptask,
    rbac_path,
    status_of,
)

from ssa_controller.client.kube import Kube
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import poll_until

KUBECTL = "/usr/bin/kubectl"
USER = "bob"
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def built_with_namespaced(tmp_path: Path) -> list[dict[str, Any]]:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(MANIFESTS, overlay)],
        "components": [os.path.relpath(MANIFESTS / "namespaced", overlay)]}))
    out = subprocess.run([KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def for_the_test(objects: list[dict[str, Any]], namespace: str, lease: str,
                 suffix: str, sharding: bool = False) -> list[dict[str, Any]]:
    """Every binding of the controller's ServiceAccount the build holds, and the Roles they
    name, for this test (without sharding's, unless `sharding`): one watched namespace's
    RoleBinding of each ClusterRole moved to `namespace` (the others dropped), the Lease's name
    `lease`, every subject bob, every name suffixed."""
    account = {"kind": "ServiceAccount", "name": "ssa-controller",
               "namespace": CONTROLLER_NAMESPACE}
    objects = [o for o in objects if sharding or o["metadata"]["name"] not in SHARDING_ROLES]
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
                and account in o["subjects"]]
    watched = [b for b in bindings if b["kind"] == "RoleBinding"
               and b["metadata"]["namespace"] != CONTROLLER_NAMESPACE]
    chosen = [o for o in objects if o["kind"] == "Role"]
    chosen += [b for b in bindings if b not in watched]
    for role in sorted({b["roleRef"]["name"] for b in watched}):
        first = next(b for b in watched if b["roleRef"]["name"] == role)
        chosen.append({**first, "metadata": {**first["metadata"], "namespace": namespace}})
    for obj in chosen:
        obj["metadata"]["name"] += suffix
        for rule in obj.get("rules", ()):
            if "resourceNames" in rule:
                rule["resourceNames"] = [lease]
        if obj["kind"] != "Role":
            obj["subjects"] = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                "name": USER}]
            if obj["roleRef"]["kind"] == "Role":
                obj["roleRef"] = {**obj["roleRef"], "name": obj["roleRef"]["name"] + suffix}
    return chosen


@contextlib.contextmanager
def bound(admin: Kube, objects: list[dict[str, Any]]) -> Iterator[None]:
    for obj in objects:
        admin.apply(rbac_path(obj), obj, field_manager="tests", force=True)
    try:
        yield
    finally:
        for obj in objects:
            try:
                admin.delete(rbac_path(obj))
            except ApiError as exc:
                if exc.status != 404:
                    raise


def allowed(admin: Kube, namespace: str, group: str, resource: str, verb: str,
            name: str = "") -> bool:
    attributes = {"namespace": namespace, "group": group, "resource": resource, "verb": verb}
    if name:
        attributes["name"] = name
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": USER, "resourceAttributes": attributes}}
    return bool(admin.create(SAR_PATH, review)["status"].get("allowed"))


@pytest.fixture
def namespaced_rbac(admin: Kube, namespace: str, lease_name: str,
                    tmp_path: Path) -> Iterator[None]:
    with bound(admin, for_the_test(built_with_namespaced(tmp_path), namespace, lease_name,
                                   f"-{secrets.token_hex(3)}")):
        yield


@pytest.mark.usefixtures("namespaced_rbac")
def test_a_controller_token_reaches_only_its_namespaces_and_its_lease(
        admin: Kube, controller, namespace: str, lease_name: str) -> None:
    poll_until(lambda: allowed(admin, namespace, "apps", "deployments", "create"), timeout=10,
               message="the RoleBinding in the watched namespace in effect")
    for verb in ("create", "patch"):
        assert allowed(admin, namespace, "apps", "deployments", verb)
        for elsewhere in ("kube-system", "default", CONTROLLER_NAMESPACE):
            assert not allowed(admin, elsewhere, "apps", "deployments", verb), (elsewhere, verb)
    leases = ("coordination.k8s.io", "leases")
    assert allowed(admin, CONTROLLER_NAMESPACE, *leases, "update", lease_name)
    assert not allowed(admin, CONTROLLER_NAMESPACE, *leases, "update", "another-lease")
    assert not allowed(admin, "kube-node-lease", *leases, "update", lease_name)

    # ... and it is enough: the controller runs as bob, with leader election on.
    controller({"namespaces": [namespace], "leaderElection": {
        "enabled": True, "namespace": CONTROLLER_NAMESPACE, "leaseName": lease_name}},
        user=USER)
    put_apptask(admin, apptask("web", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "web").get("phase") == "Ready", timeout=60,
               message="the AppTask Ready")


def test_with_sharding_a_controller_token_reaches_its_namespaces_and_its_own_leases(
        admin: Kube, controller, namespace: str, lease_name: str, tmp_path: Path) -> None:
    """With sharding's objects, the token may also patch AppTasks (their labels) in the watched
    namespace only, and read, renew, list and delete the Leases of the controller's namespace
    (shard Leases are named after the replicas), no others; and that is enough to run
    sharded."""
    objects = for_the_test(built_with_namespaced(tmp_path), namespace, lease_name,
                           f"-{secrets.token_hex(3)}", sharding=True)
    with bound(admin, objects):
        poll_until(lambda: allowed(admin, namespace, "example.com", "apptasks", "patch"),
                   timeout=10, message="the sharding RoleBinding in the watched namespace")
        for elsewhere in ("kube-system", "default", CONTROLLER_NAMESPACE):
            assert not allowed(admin, elsewhere, "example.com", "apptasks", "patch"), elsewhere
        leases = ("coordination.k8s.io", "leases")
        for verb in ("get", "update", "delete"):
            assert allowed(admin, CONTROLLER_NAMESPACE, *leases, verb, "a-shard-lease")
            assert not allowed(admin, "kube-node-lease", *leases, verb, "a-shard-lease")
        for verb in ("list", "watch"):
            assert allowed(admin, CONTROLLER_NAMESPACE, *leases, verb)
            assert not allowed(admin, "kube-node-lease", *leases, verb)

        controller({"namespaces": [namespace], "sharding": {"enabled": True},
                    "leaderElection": {"enabled": True, "namespace": CONTROLLER_NAMESPACE,
                                       "leaseName": lease_name}}, user=USER)
        put_apptask(admin, apptask("web", namespace, replicas=1))
        poll_until(lambda: status_of(admin, namespace, "web").get("phase") == "Ready",
                   timeout=60, message="the AppTask Ready")
        labels = admin.get(f"/apis/example.com/v1/namespaces/{namespace}/apptasks/web")[
            "metadata"]["labels"]
        assert labels.get("apptasks.example.com/shard")
    ring = admin.list(f"/apis/coordination.k8s.io/v1/namespaces/{CONTROLLER_NAMESPACE}/leases",
                      {"labelSelector": f"apptasks.example.com/ring={lease_name}"})["items"]
    for lease in ring:  # the shard's (the leader Lease goes with the lease_name fixture)
        admin.delete(f"/apis/coordination.k8s.io/v1/namespaces/{CONTROLLER_NAMESPACE}/leases/"
                     f"{lease['metadata']['name']}")
