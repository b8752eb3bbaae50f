"""Static checks on manifests/: the CRD, RBAC, ConfigMap, Deployment, Kustomization, Dockerfile.

No cluster needed. What a real API server does with these files is proven by the integration
tests; here we catch the mistakes that are cheap to catch: a non-structural CRD schema,
a wildcard in RBAC, a missing probe or security setting, a file the Kustomization forgets,
a file order that makes `kubectl apply -f manifests/` fail on a fresh cluster, an invalid
controller.yaml in the ConfigMap; and the monitoring kit in manifests/monitoring (names that
match the Service and Deployment, alerts and dashboard queries that use only served metrics).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ssa_controller.apptask import fields
from ssa_controller.apptask.status import Phase
from ssa_controller.envtest.podsecurity import restricted_violations

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
KUSTOMIZATION = MANIFESTS / "Kustomization"
RUNBOOKS = "docs/operations.md"
"""Where the alerts' runbooks are, relative to the repository root."""
NAMESPACE = "ssa-controller-system"
SERVICE_ACCOUNT = "ssa-controller"

# The target API server is v1.20.2: only these group/versions may appear.
ALLOWED_API_VERSIONS = {
    "apiextensions.k8s.io/v1",
    "apps/v1",
    "rbac.authorization.k8s.io/v1",
    "coordination.k8s.io/v1",
    "events.k8s.io/v1",
    "networking.k8s.io/v1",
    "v1",
}
CLUSTER_SCOPED_KINDS = {
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
}

# Upstream's resource.Quantity pattern (as controller-gen emits it for int-or-string quantities).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


# ---------------------------------------------------------------------------- helpers


def yaml_files() -> list[Path]:
    """The files `kubectl apply -f manifests/` reads, in the order it reads them."""
    return sorted(p for p in MANIFESTS.iterdir() if p.suffix in {".yaml", ".yml", ".json"})


def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def all_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in yaml_files() for d in load_docs(p)]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in all_objects()
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def crd() -> dict[str, Any]:
    return find("CustomResourceDefinition", "apptasks.example.com")


def crd_version() -> dict[str, Any]:
    versions = crd()["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1"]
    return versions[0]


def root_schema() -> dict[str, Any]:
    return crd_version()["schema"]["openAPIV3Schema"]


def spec_props() -> dict[str, Any]:
    return root_schema()["properties"]["spec"]["properties"]


def status_props() -> dict[str, Any]:
    return root_schema()["properties"]["status"]["properties"]


def strings(node: Any) -> Iterator[str]:
    """Every string (keys and values) anywhere in a YAML tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def go_duration_seconds(value: Any) -> float:
    """Seconds in a number or a Go-style duration ("30s", "1m30s", "500ms")."""
    if isinstance(value, (int, float)):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------------------- every file


def test_every_manifest_parses_and_uses_only_v1_20_apis() -> None:
    files = yaml_files()
    assert files, "no manifests found"
    for path, doc in all_objects():
        assert isinstance(doc, dict), path
        assert doc.get("apiVersion") in ALLOWED_API_VERSIONS, (
            f"{path.name}: {doc.get('apiVersion')}")
        assert doc.get("kind"), path
        assert doc.get("metadata", {}).get("name"), path
        if doc["kind"] in CLUSTER_SCOPED_KINDS:
            assert "namespace" not in doc["metadata"], (
                f"{path.name}: {doc['kind']} is cluster-scoped")
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{path.name}: {doc['kind']}"
    # Each file parses on its own (no stray tabs, no duplicate documents).
    for path in files:
        assert load_docs(path), f"{path.name} is empty"


def test_expected_objects_are_present() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for _, d in all_objects())
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            ("CustomResourceDefinition", "apptasks.example.com"),
            ("ServiceAccount", SERVICE_ACCOUNT),
            ("ClusterRole", "ssa-controller"),
            ("ClusterRoleBinding", "ssa-controller"),
            ("ClusterRole", "ssa-controller-metrics-auth"),
            ("ClusterRoleBinding", "ssa-controller-metrics-auth"),
            ("ClusterRole", "ssa-controller-metrics-reader"),
            ("Role", "ssa-controller-leader-election"),
            ("RoleBinding", "ssa-controller-leader-election"),
            ("ClusterRole", "ssa-controller-sharding"),
            ("ClusterRoleBinding", "ssa-controller-sharding"),
            ("Role", "ssa-controller-shard-leases"),
            ("RoleBinding", "ssa-controller-shard-leases"),
            ("ConfigMap", "ssa-controller-config"),
            ("NetworkPolicy", "ssa-controller"),
            ("Deployment", "ssa-controller"),
        ]
    )


def test_apply_f_directory_order_creates_namespace_first() -> None:
    """`kubectl apply -f manifests/` goes file by file in name order and does not sort by kind:
    every namespaced object must come after its Namespace, or a fresh install fails."""
    created: set[str] = set()
    for path, doc in all_objects():
        if doc["kind"] == "Namespace":
            created.add(doc["metadata"]["name"])
        elif doc["kind"] not in CLUSTER_SCOPED_KINDS:
            ns = doc["metadata"]["namespace"]
            assert ns in created, (
                f"{path.name}: {doc['kind']} in {ns} is applied before its Namespace")


# ---------------------------------------------------------------------------- CRD


def test_crd_names_scope_and_subresources() -> None:
    c = crd()
    assert c["apiVersion"] == "apiextensions.k8s.io/v1"
    spec = c["spec"]
    assert spec["group"] == "example.com"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "AppTask",
        "listKind": "AppTaskList",
        "plural": "apptasks",
        "singular": "apptask",
        "shortNames": ["at"],
    }
    v = crd_version()
    assert v["served"] is True and v["storage"] is True
    assert v["subresources"] == {"status": {}}


def test_crd_printer_columns() -> None:
    columns = crd_version()["additionalPrinterColumns"]
    cols = [(c["name"], c["type"], c["jsonPath"], c.get("priority", 0)) for c in columns]
    assert cols == [
        ("Image", "string", ".spec.image", 0),
        ("Desired", "integer", ".spec.replicas", 0),
        ("Ready", "integer", ".status.readyReplicas", 0),
        ("Synced", "string", '.status.conditions[?(@.type=="Synced")].status', 0),
        ("Phase", "string", ".status.phase", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Observed", "integer", ".status.observedGeneration", 1),  # -o wide
    ]


_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")
_INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]


def _check_junctor_branch(node: Any, where: str) -> None:
    if isinstance(node, list):
        for i, n in enumerate(node):
            _check_junctor_branch(n, f"{where}[{i}]")
        return
    assert isinstance(node, dict), where
    for key in _FORBIDDEN_IN_JUNCTORS:
        assert key not in node, f"{where}: {key} inside a logical junctor is not structural"
    for sub in ("properties",):
        for name, child in node.get(sub, {}).items():
            _check_junctor_branch(child, f"{where}.{sub}.{name}")
    if "items" in node:
        _check_junctor_branch(node["items"], f"{where}.items")


def _check_structural(node: dict[str, Any], where: str) -> None:
    """The rules of a structural schema (apiextensions v1), the ones a hand-written CRD can
    break."""
    assert isinstance(node, dict), where
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    assert "type" in node or int_or_string or preserve, f"{where}: no type"
    for junctor in _JUNCTORS:
        if junctor not in node:
            continue
        if int_or_string and junctor == "anyOf" and node["anyOf"] == _INT_OR_STRING_ANYOF:
            continue  # the one allowed exception
        _check_junctor_branch(node[junctor], f"{where}.{junctor}")
    if int_or_string:
        assert "type" not in node, f"{where}: int-or-string must not set type"
    if "properties" in node:
        assert node.get("type") == "object", f"{where}: properties on a non-object"
        assert "additionalProperties" not in node, (
            f"{where}: properties and additionalProperties together")
        for name, child in node["properties"].items():
            _check_structural(child, f"{where}.{name}")
    if "additionalProperties" in node:
        assert node.get("type") == "object", f"{where}: additionalProperties on a non-object"
        ap = node["additionalProperties"]
        assert isinstance(ap, dict), f"{where}: additionalProperties must be a schema"
        _check_structural(ap, f"{where}.additionalProperties")
    if node.get("type") == "array":
        assert isinstance(node.get("items"), dict), f"{where}: an array needs a single items schema"
        _check_structural(node["items"], f"{where}[]")
    else:
        assert "items" not in node, f"{where}: items on a non-array"
    for key in ("required",):
        for name in node.get(key, []):
            assert name in node.get("properties", {}), f"{where}: required {name} is not a property"
    if node.get("x-kubernetes-list-type") == "map":
        assert node.get("type") == "array", where
        items = node["items"]
        keys = node.get("x-kubernetes-list-map-keys")
        assert keys, f"{where}: list-type map needs list-map-keys"
        for key in keys:
            prop = items["properties"][key]
            assert prop.get("type") in {"string", "integer", "boolean"}, (
                f"{where}: map key {key} not scalar")
            assert key in items.get("required", []) or "default" in prop, (
                f"{where}: map key {key} must be required or defaulted"
            )
    if "default" in node and "enum" in node:
        assert node["default"] in node["enum"], f"{where}: default not in enum"


def test_crd_schema_is_structural() -> None:
    root = root_schema()
    assert root["type"] == "object"
    _check_structural(root, "openAPIV3Schema")
    # metadata may only be a bare object at the root (name/generateName restrictions aside).
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["required"] == ["spec"]


def test_crd_spec_schema() -> None:
    spec = root_schema()["properties"]["spec"]
    assert spec["required"] == ["image"]
    p = spec_props()
    assert set(p) == {
        "image", "replicas", "command", "args", "env", "ports", "resources", "labels",
        "annotations", "paused", *fields.CONTAINER, *fields.POD, *fields.DEPLOYMENT, "service",
    }  # the workload fields' schemas: tests/unit/test_fields.py
    assert p["image"] == {**p["image"], "type": "string", "minLength": 1}
    assert p["replicas"]["type"] == "integer" and p["replicas"]["format"] == "int32"
    assert p["replicas"]["minimum"] == 0 and "default" not in p["replicas"]
    for key in ("command", "args"):
        assert p[key]["type"] == "array" and p[key]["items"]["type"] == "string"
    assert p["paused"]["type"] == "boolean"
    for key in ("labels", "annotations"):
        assert p[key]["type"] == "object"
        assert p[key]["additionalProperties"]["type"] == "string"

    env = p["env"]
    assert env["x-kubernetes-list-type"] == "map"
    assert env["x-kubernetes-list-map-keys"] == ["name"]
    assert env["items"]["required"] == ["name"]
    assert env["items"]["properties"]["name"] == {"type": "string", "minLength": 1,
                                                  "maxLength": 256}
    assert env["items"]["properties"]["value"] == {"type": "string", "maxLength": 4096}


SPEC_BOUNDS = {
    "image": ("maxLength", 1024),
    "command": ("maxItems", 128), "command[]": ("maxLength", 4096),
    "args": ("maxItems", 128), "args[]": ("maxLength", 4096),
    "env": ("maxItems", 256), "env[].name": ("maxLength", 256),
    "env[].value": ("maxLength", 4096),
    "ports": ("maxItems", 64), "ports[].name": ("maxLength", 15),
    "resources.requests": ("maxProperties", 16), "resources.requests{}": ("maxLength", 64),
    "resources.limits": ("maxProperties", 16), "resources.limits{}": ("maxLength", 64),
    "labels": ("maxProperties", 64), "labels{}": ("maxLength", 63),
    "annotations": ("maxProperties", 64), "annotations{}": ("maxLength", 4096),
}
"""Issue 26.1: what the server refuses (422) before any controller parses it."""


def _bounds(schema: dict[str, Any], at: str) -> Iterator[tuple[str, tuple[str, int] | None]]:
    """(path, the bound) of every string, list and map in `schema`; None where unbounded.
    Strings with an enum and objects with fixed properties bound themselves."""
    kind = schema.get("type")
    if kind == "array":
        yield at, ("maxItems", schema["maxItems"]) if "maxItems" in schema else None
        yield from _bounds(schema["items"], f"{at}[]")
    elif kind == "object" and "additionalProperties" in schema:
        yield at, ("maxProperties", schema["maxProperties"]) if "maxProperties" in schema \
            else None
        yield from _bounds(schema["additionalProperties"], f"{at}{{}}")
    elif kind == "object":
        for name, child in schema.get("properties", {}).items():
            yield from _bounds(child, f"{at}.{name}".lstrip("."))
    elif (kind == "string" or "x-kubernetes-int-or-string" in schema) and "enum" not in schema:
        yield at, ("maxLength", schema["maxLength"]) if "maxLength" in schema else None


def test_crd_spec_bounds_every_list_map_and_string() -> None:
    bounds = dict(_bounds(root_schema()["properties"]["spec"], ""))
    assert {k: v for k, v in bounds.items() if k in SPEC_BOUNDS} == SPEC_BOUNDS
    assert [path for path, bound in bounds.items() if bound is None] == []


def test_crd_ports_are_a_plain_list() -> None:
    """Deliberately no list-map keys: duplicate containerPort+protocol must reach the controller,
    which reports the Deployment's 422 as status."""
    ports = spec_props()["ports"]
    assert ports["type"] == "array"
    assert "x-kubernetes-list-type" not in ports and "x-kubernetes-list-map-keys" not in ports
    item = ports["items"]
    assert item["required"] == ["containerPort"]
    props = item["properties"]
    assert props["name"]["type"] == "string" and props["name"]["maxLength"] == 15
    cp = props["containerPort"]
    assert (cp["type"], cp["format"], cp["minimum"], cp["maximum"]) == (
        "integer", "int32", 1, 65535)
    assert props["protocol"]["enum"] == ["TCP", "UDP", "SCTP"]
    assert props["protocol"]["default"] == "TCP"


def test_crd_resources_are_quantities() -> None:
    res = spec_props()["resources"]
    assert set(res["properties"]) == {"requests", "limits"}
    for key in ("requests", "limits"):
        ap = res["properties"][key]["additionalProperties"]
        assert ap["x-kubernetes-int-or-string"] is True
        assert ap["anyOf"] == _INT_OR_STRING_ANYOF
        assert ap["pattern"] == QUANTITY_PATTERN
        pattern = re.compile(ap["pattern"])
        for ok in ("100m", "128Mi", "1", "0.5", "1e3", "2Gi", "+1k"):
            assert pattern.match(ok), ok
        for bad in ("abc", "1Mb", "", "1.2.3"):
            assert not pattern.match(bad), bad


def test_crd_status_schema() -> None:
    s = status_props()
    assert set(s) == {
        "observedGeneration", "phase", "conditions", "deploymentName", "serviceName",
        "readyReplicas",
    }
    generation = s["observedGeneration"]
    assert (generation["type"], generation["format"]) == ("integer", "int64")
    assert s["phase"]["enum"] == [phase.value for phase in Phase]  # each one the controller writes
    assert s["deploymentName"]["type"] == s["serviceName"]["type"] == "string"
    assert s["readyReplicas"]["type"] == "integer"

    cond = s["conditions"]
    assert cond["x-kubernetes-list-type"] == "map"
    assert cond["x-kubernetes-list-map-keys"] == ["type"]
    item = cond["items"]
    assert sorted(item["required"]) == sorted(
        ["type", "status", "reason", "message", "lastTransitionTime"])
    props = item["properties"]
    assert set(props) == {
        "type", "status", "reason", "message", "observedGeneration", "lastTransitionTime",
    }
    assert props["status"]["enum"] == ["True", "False", "Unknown"]  # strings, not YAML booleans
    assert props["lastTransitionTime"] == {"type": "string", "format": "date-time"}
    generation = props["observedGeneration"]
    assert (generation["type"], generation["format"]) == ("integer", "int64")
    reason = re.compile(props["reason"]["pattern"])
    for ok in ("Applied", "ApplyFailed", "Invalid", "Reason_1"):
        assert reason.match(ok), ok
    for bad in ("", "1Bad", "has space", "Trailing,"):
        assert not reason.match(bad), bad


# ---------------------------------------------------------------------------- RBAC


def rbac_objects() -> list[dict[str, Any]]:
    return [d for _, d in all_objects() if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]


def rules(kind: str, name: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a Role or ClusterRole grants."""
    out: set[tuple[str, str, str]] = set()
    for rule in find(kind, name)["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule keys {set(rule)}"
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    out.add((g, r, v))
    return out


def test_rbac_has_no_wildcards() -> None:
    objs = rbac_objects()
    assert objs
    for doc in objs:
        for s in strings(doc):
            assert "*" not in s, f"{doc['kind']} {doc['metadata']['name']}: wildcard in {s!r}"


def test_cluster_role_is_least_privilege() -> None:
    def grant(group: str, resource: str, *verbs: str) -> set[tuple[str, str, str]]:
        return {(group, resource, v) for v in verbs}

    assert rules("ClusterRole", "ssa-controller") == (
        grant("example.com", "apptasks", "list", "watch")
        | grant("example.com", "apptasks/status", "patch")
        | grant("example.com", "apptasks/finalizers", "update")
        | grant("apps", "deployments", "get", "list", "watch", "create", "patch", "delete")
        | grant("", "services", "get", "list", "watch", "create", "patch", "delete")
        | grant("events.k8s.io", "events", "create", "patch")
    )


def test_leader_election_role_is_namespaced_leases_only() -> None:
    role = find("Role", "ssa-controller-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules("Role", "ssa-controller-leader-election") == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }
    # Leases only through the namespaced Role, never cluster-wide.
    assert not any(r == "leases" for _, r, _ in rules("ClusterRole", "ssa-controller"))


def test_metrics_auth_role_creates_reviews_only() -> None:
    assert rules("ClusterRole", "ssa-controller-metrics-auth") == {
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    }


def test_metrics_reader_may_get_metrics_only_and_is_bound_to_nobody_here() -> None:
    assert find("ClusterRole", "ssa-controller-metrics-reader")["rules"] == [
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
    ]
    bound = {d["roleRef"]["name"] for d in rbac_objects() if "roleRef" in d}
    assert "ssa-controller-metrics-reader" not in bound


@pytest.mark.parametrize(
    ("kind", "name", "role_kind"),
    [
        ("ClusterRoleBinding", "ssa-controller", "ClusterRole"),
        ("ClusterRoleBinding", "ssa-controller-metrics-auth", "ClusterRole"),
        ("RoleBinding", "ssa-controller-leader-election", "Role"),
    ],
)
def test_bindings_point_at_the_service_account(kind: str, name: str, role_kind: str) -> None:
    binding = find(kind, name)
    ref = binding["roleRef"]
    assert ref["apiGroup"] == "rbac.authorization.k8s.io" and ref["kind"] == role_kind
    find(role_kind, ref["name"])  # the referenced role exists in manifests/
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
    ]
    find("ServiceAccount", SERVICE_ACCOUNT)


# ---------------------------------------------------------------------------- ConfigMap


def controller_yaml_text() -> str:
    cm = find("ConfigMap", "ssa-controller-config")
    assert set(cm["data"]) == {"controller.yaml"}
    return cm["data"]["controller.yaml"]


def test_configmap_settings() -> None:
    raw = yaml.safe_load(controller_yaml_text())
    assert raw["leaderElection"]["enabled"] is True
    assert raw["leaderElection"]["namespace"] == NAMESPACE
    assert raw["server"]["metricsPort"] == 8080
    assert raw["server"]["healthPort"] == 8081
    assert raw["server"]["secureMetrics"] is True  # scrapes need a token (rbac.yaml's reviews)
    assert raw["logging"]["format"] == "json"
    assert raw.get("dryRun", False) is False  # dry-run would disable leader election


def test_configmap_controller_yaml_is_valid() -> None:
    if importlib.util.find_spec("ssa_controller.settings.config") is None:
        pytest.skip("ssa_controller.settings.config is not written yet")
    from ssa_controller.settings.config import parse_config

    cfg = parse_config(yaml.safe_load(controller_yaml_text()))
    assert cfg.leader_election.enabled is True
    assert cfg.leader_election.namespace == NAMESPACE
    assert (cfg.server.metrics_port, cfg.server.health_port) == (8080, 8081)
    assert cfg.logging.format == "json"
    assert cfg.dry_run is False
    tgps = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert tgps > cfg.shutdown_grace_period


# ---------------------------------------------------------------------------- Deployment


def deployment() -> dict[str, Any]:
    return find("Deployment", "ssa-controller")


def container() -> dict[str, Any]:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_deployment_basics() -> None:
    d = deployment()
    assert d["metadata"]["namespace"] == NAMESPACE
    assert d["spec"]["replicas"] == 2
    selector = d["spec"]["selector"]["matchLabels"]
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    # The controller must never take its own Deployment for one it manages.
    for labels in (d["metadata"].get("labels", {}), pod_labels):
        assert "app.kubernetes.io/managed-by" not in labels
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    c = container()
    assert c["image"] == "ssa-controller:0.1.0"
    assert c["args"] == ["run", "--config", "/etc/ssa-controller/controller.yaml"]
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"]
           for e in c["env"]}
    # MALLOC_ARENA_MAX: the memory the benchmark measures (it runs the controller with it)
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
                   "MALLOC_ARENA_MAX": "2"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}


def test_deployment_probes() -> None:
    c = container()
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}


def test_deployment_resources() -> None:
    assert container()["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_deployment_security() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc.get("runAsNonRoot", True) is True
    assert sc.get("privileged", False) is False
    assert sc.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod and "hostPID" not in pod


def test_the_namespace_enforces_restricted_and_the_controller_meets_it() -> None:
    namespace = find("Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert restricted_violations(deployment()["spec"]["template"]) == []


def test_deployment_volumes_match_configmap_and_tmp() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    config_mount = mounts["/etc/ssa-controller"]
    assert config_mount.get("readOnly") is True
    assert volumes[config_mount["name"]]["configMap"]["name"] == "ssa-controller-config"
    find("ConfigMap", "ssa-controller-config")
    assert "controller.yaml" in find("ConfigMap", "ssa-controller-config")["data"]
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {}


def test_the_metrics_certificate_is_mounted_where_the_config_looks() -> None:
    cert_dir = yaml.safe_load(controller_yaml_text())["server"]["metricsCertDir"]
    mount = {m["mountPath"]: m for m in container()["volumeMounts"]}[cert_dir]
    assert mount.get("readOnly") is True
    volume = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}[
        mount["name"]]
    assert volume["secret"] == {"secretName": METRICS_CERT_SECRET}  # required: no optional


def test_the_network_policy_lets_only_the_monitoring_namespace_reach_the_metrics_port() -> None:
    policy = find("NetworkPolicy", "ssa-controller")["spec"]
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    [source] = rule["from"]
    prometheus_namespace = find_monitoring("ClusterRoleBinding")["subjects"][0]["namespace"]
    assert source == {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": prometheus_namespace}}}
    assert rule["ports"] == [{"protocol": "TCP", "port": "metrics"}]


def test_termination_grace_exceeds_shutdown_grace() -> None:
    raw = yaml.safe_load(controller_yaml_text())
    shutdown = go_duration_seconds(raw.get("shutdownGracePeriod", "30s"))  # 30s is the default
    tgps = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert tgps == 40
    assert tgps > shutdown


# ---------------------------------------------------------------------------- Kustomization


def test_kustomization_lists_every_manifest() -> None:
    k = yaml.safe_load(KUSTOMIZATION.read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    listed = k["resources"]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == [p.name for p in yaml_files()]
    # namespace first, deployment last (kustomize reorders anyway; this keeps the file readable)
    assert listed[0] == "00-namespace.yaml" and listed[-1] == "deployment.yaml"


def test_no_kustomization_yaml_in_apply_f_path() -> None:
    """`kubectl apply -f manifests/` reads every *.yaml/*.yml/*.json in the directory, and a
    kustomization.yaml fails there; the Kustomization file has no extension, so it is skipped."""
    names = {p.name.lower() for p in yaml_files()}
    assert not names & {"kustomization.yaml", "kustomization.yml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_builds_offline() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    built = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out.stdout) if d)
    assert built == sorted((d["kind"], d["metadata"]["name"]) for _, d in all_objects())


# ---------------------------------------------------------------------------- namespaced RBAC

NAMESPACED = MANIFESTS / "namespaced"


def build_with_namespaced(tmp_path: Path) -> list[dict[str, Any]]:
    """manifests/ with the namespaced component, built as a user's overlay builds it."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(MANIFESTS, overlay)],
        "components": [os.path.relpath(NAMESPACED, overlay)]}))
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_namespaced_component_binds_the_controller_in_its_namespaces_only(
        tmp_path: Path) -> None:
    """Issue 26.5: with `namespaces` set, the ClusterRoleBinding still granted Deployments in
    every namespace to the controller's token."""
    built = build_with_namespaced(tmp_path)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in built:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert [b["roleRef"]["name"] for b in by_kind["ClusterRoleBinding"]] == [
        "ssa-controller-metrics-auth"]  # reviews are cluster-scoped, nothing else is
    config = yaml.safe_load(next(c for c in by_kind["ConfigMap"])["data"]["controller.yaml"])
    for role in ("ssa-controller", "ssa-controller-sharding"):
        bound = sorted(b["metadata"]["namespace"] for b in by_kind["RoleBinding"]
                       if b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                           "kind": "ClusterRole", "name": role})
        assert bound == sorted(config["namespaces"]), role
    roles = {r["metadata"]["name"]: r for r in by_kind["Role"]}
    assert roles["ssa-controller-leader-election"]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": [config["leaderElection"]["leaseName"]], "verbs": ["get", "update"]}]
    # with sharding, the shard Leases (named after the replicas) of the controller's namespace
    assert roles["ssa-controller-shard-leases"]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "update", "list", "watch", "delete"]}]
    assert {r["metadata"]["namespace"] for r in roles.values()} == {NAMESPACE}
    base = yaml.safe_load(controller_yaml_text())
    del config["namespaces"], config["leaderElection"]["leaseName"]
    assert config == base  # the rest as the base has it


# ---------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[str]:
    """manifests/Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", (MANIFESTS / "Dockerfile").read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_dockerfile() -> None:
    lines = dockerfile_instructions()
    # The base, pinned by digest, in the one ARG every stage starts from (tests/image builds the
    # same file with a stand-in base by overriding it).
    assert re.fullmatch(r"ARG BASE_IMAGE=docker\.io/library/debian@sha256:[0-9a-f]{64}",
                        lines[0]), lines[0]
    stages: set[str] = set()
    for ln in lines:
        if ln.startswith("FROM "):
            words = ln.split()
            assert words[1] in {"${BASE_IMAGE}", *stages}, ln
            stages.update(words[3:4])
    # Dependencies only from the hash-checked locks, no test extras, no build from sources.
    installs = [part for ln in lines for part in ln.split("&&") if " install " in part
                and "pip" in part and " -r " in part]
    assert len(installs) == 2
    assert all("--require-hashes" in part and "--only-binary=:all:" in part for part in installs)
    assert "[test]" not in " ".join(lines)
    assert any(ln.startswith("COPY manifests/crd.yaml ") for ln in lines)
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split()[1] == "65532:65532"
    assert lines.count('ENTRYPOINT ["ssa-controller"]') == 1
    labels = " ".join(ln for ln in lines if ln.startswith("LABEL "))
    for label in ("source", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_dockerfile_copies_exist_and_pass_its_dockerignore() -> None:
    """Everything the image copies from the build context (the repository root) exists and is
    let through by manifests/Dockerfile.dockerignore, which ignores everything else."""
    patterns = [ln.strip() for ln in (MANIFESTS / "Dockerfile.dockerignore").read_text()
                .splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert patterns[0] == "**"
    let_through = {ln[1:].rstrip("/") for ln in patterns if ln.startswith("!")}
    repo = MANIFESTS.parent
    copies = [ln.split()[1:-1] for ln in dockerfile_instructions()
              if ln.startswith("COPY ") and "--from" not in ln]
    assert copies
    for sources in copies:
        for src in sources:
            assert (repo / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
            assert src.rstrip("/") in let_through, f"Dockerfile.dockerignore leaves {src} out"


def test_the_image_installs_no_lab() -> None:
    """The lab's bad controllers are wrong on purpose: they live outside the runtime package
    (ssa_lab), and a build from the image's context (which copies ssa_controller/ alone) finds
    no other package, so the image installs none of them."""
    setuptools = pytest.importorskip("setuptools")
    repo = MANIFESTS.parent
    include = tomllib.loads((repo / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["packages"]["find"]["include"]
    found = setuptools.find_packages(repo, include=include)
    assert {"ssa_lab", "ssa_lab.bad"} <= set(found)
    assert not [p for p in found if p.startswith("ssa_controller") and "lab" in p.split(".")]
    copied = {src for ln in (MANIFESTS / "Dockerfile").read_text().splitlines()
              if ln.startswith("COPY ") for src in ln.split()[1:-1]}
    assert {p.split(".")[0] for p in found if p.split(".")[0] in copied} == {"ssa_controller"}


def _distribution(name: str) -> str:
    """A distribution or requirement name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", name).group()).lower()


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a module but those only type checkers read (`if TYPE_CHECKING:` blocks)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def test_every_package_imported_is_declared() -> None:
    """urllib3 was imported (proxied, the lab) but came only with the kubernetes package; it is
    declared, at 2.3 or later (BaseHTTPResponse.shutdown, which proxied uses, is 2.3's). What
    only type checkers import (`if TYPE_CHECKING:`) is no runtime dependency."""
    repo = MANIFESTS.parent
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    declared = {_distribution(r) for r in [*project["dependencies"],
                                           *project["optional-dependencies"]["lab"]]}
    imported: set[str] = set()
    for path in [*(repo / "ssa_controller").rglob("*.py"), *(repo / "ssa_lab").rglob("*.py")]:
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    undeclared = sorted(m for m in imported - set(sys.stdlib_module_names)
                        - {"ssa_controller", "ssa_lab"}
                        if not {_distribution(d) for d in providers.get(m, [m])} & declared)
    assert undeclared == []
    assert "urllib3>=2.3" in project["dependencies"]


# ---------------------------------------------------------------------------- monitoring

MONITORING = MANIFESTS / "monitoring"
CERT_MANAGER = MANIFESTS / "cert-manager"
METRICS_CERT_SECRET = "ssa-controller-metrics-cert"
DASHBOARD = MONITORING / "dashboards" / "ssa-controller.json"
METRICS_JOB = "ssa-controller-metrics"
ALERTS = {
    "SsaControllerReconcileErrors", "SsaControllerFightDetected", "SsaControllerWorkQueueGrowing",
    "SsaControllerNoLeader", "SsaControllerWatchRelists", "SsaControllerRejectedSpecs",
    "SsaControllerAppTasksUnassigned",
}
PANELS = [
    "Reconciles by result", "Reconcile errors", "Reconcile duration", "Work queue depth",
    "Work queue latency", "Work queue adds and retries", "Applies by outcome",
    "Fights and conflicts", "API requests by code and verb", "API request latency",
    "Cached objects", "Memory (RSS)", "Leader", "Watch restarts and relists",
    "Sharding (sharding.enabled)", "AppTasks per shard", "Shard label writes", "Drain time",
    "Unassigned AppTasks",
]
ROW = "row"
"""A dashboard row: a title over the panels below it, no query of its own."""
METRIC_NAME = re.compile(
    r"\b((?:controller_runtime|workqueue|rest_client|leader_election|ssa_controller|process)_[a-z_]+)"
)


def monitoring_objects() -> list[dict[str, Any]]:
    paths = sorted(p for p in MONITORING.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    return [d for p in paths for d in load_docs(p)]


def cert_manager_objects() -> list[dict[str, Any]]:
    return load_docs(CERT_MANAGER / "certificate.yaml")


def find_cert_manager(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in cert_manager_objects()
               if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def find_monitoring(kind: str) -> dict[str, Any]:
    found = [d for d in monitoring_objects() if d["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind} in manifests/monitoring"
    return found[0]


def alert_rules() -> list[dict[str, Any]]:
    groups = find_monitoring("PrometheusRule")["spec"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels if panel["type"] != ROW
            for target in panel["targets"]]


def served_metric_names() -> set[str]:
    """Every sample name the controller's /metrics serves (histograms with their suffixes), a
    sharded process's included."""
    from ssa_controller.serving.metrics import Metrics

    metrics = Metrics()
    metrics.sharding("ring", "shard")
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in metrics.registry.collect()
            for suffix in suffixes[family.type]}


def test_monitoring_stays_out_of_the_default_apply() -> None:
    """`kubectl apply -f manifests/` reads no subfolder and the Kustomization lists none, so a
    cluster without the Prometheus Operator's CRDs still installs cleanly."""
    assert all(MONITORING not in p.parents for p in yaml_files())
    resources = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert not any("monitoring" in r for r in resources)


def test_monitoring_objects_and_names() -> None:
    objects = sorted((d["apiVersion"], d["kind"], d["metadata"]["name"])
                     for d in monitoring_objects())
    assert objects == sorted([
        ("v1", "Service", METRICS_JOB),
        ("monitoring.coreos.com/v1", "ServiceMonitor", "ssa-controller"),
        ("monitoring.coreos.com/v1", "PrometheusRule", "ssa-controller"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding",
         "ssa-controller-metrics-reader-prometheus"),
    ])
    for doc in monitoring_objects():
        if doc["kind"] != "ClusterRoleBinding":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]


def test_metrics_service_selects_the_controller_pods_metrics_port() -> None:
    service = find_monitoring("Service")
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["name"] == "https" and port["targetPort"] == "metrics"
    assert "metrics" in {p["name"] for p in container()["ports"]}


def test_service_monitor_scrapes_https_with_prometheus_token() -> None:
    monitor = find_monitoring("ServiceMonitor")
    service = find_monitoring("Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["scheme"], endpoint["path"]) == ("https", "/metrics")
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_service_monitor_verifies_the_certificate_the_controller_serves() -> None:
    """Issue 26.4: with insecureSkipVerify, whatever became an endpoint received Prometheus'
    token, which the API server accepts."""
    [endpoint] = find_monitoring("ServiceMonitor")["spec"]["endpoints"]
    service = find_monitoring("Service")["metadata"]
    server_name = f"{service['name']}.{service['namespace']}.svc"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": METRICS_CERT_SECRET, "key": "ca.crt"}},
        "serverName": server_name}
    certificate = find_cert_manager("Certificate", METRICS_CERT_SECRET)["spec"]
    assert certificate["secretName"] == METRICS_CERT_SECRET
    assert server_name in certificate["dnsNames"]
    assert "server auth" in certificate["usages"]
    issuer = find_cert_manager("Issuer", certificate["issuerRef"]["name"])["spec"]
    ca = find_cert_manager("Certificate", issuer["ca"]["secretName"])["spec"]
    assert ca["isCA"] is True and ca["secretName"] == issuer["ca"]["secretName"]


def test_cert_manager_kit_stays_out_of_the_default_apply_and_builds() -> None:
    assert all(CERT_MANAGER not in p.parents for p in yaml_files())
    kustomization = yaml.safe_load((CERT_MANAGER / "Kustomization").read_text())
    assert kustomization["resources"] == ["certificate.yaml"]
    for doc in cert_manager_objects():
        assert doc["apiVersion"] == "cert-manager.io/v1"
        assert doc["metadata"]["namespace"] == NAMESPACE
    if shutil.which("kubectl") is not None:
        out = subprocess.run(["kubectl", "kustomize", str(CERT_MANAGER)], capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert len([d for d in yaml.safe_load_all(out.stdout) if d]) == 4


def test_prometheus_is_bound_to_the_metrics_reader_role() -> None:
    binding = find_monitoring("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "ssa-controller-metrics-reader"}
    find("ClusterRole", "ssa-controller-metrics-reader")
    assert [s["kind"] for s in binding["subjects"]] == ["ServiceAccount"]


def test_alerts_are_the_listed_ones_with_summary_description_and_runbook() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALERTS and len(rules) == len(ALERTS)
    runbooks = (MANIFESTS.parent / RUNBOOKS).read_text()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert f"`{rule['alert']}`" in runbooks, f"no runbook for {rule['alert']} in {RUNBOOKS}"
        if "for" in rule:
            go_duration_seconds(rule["for"])


def test_alerts_select_the_service_monitor_job() -> None:
    """controller_runtime_* and workqueue_* are served by every controller-runtime controller:
    each selector names the job the ServiceMonitor gives the metrics Service (its name)."""
    for rule in alert_rules():
        selectors = re.findall(r"\b[a-z_]+\{([^}]*)\}", rule["expr"])
        assert selectors, rule["alert"]
        for selector in selectors:
            assert f'job="{METRICS_JOB}"' in selector, f"{rule['alert']}: {selector}"


def test_alerts_and_dashboard_use_only_served_metrics() -> None:
    served = served_metric_names()
    exprs = [r["expr"] for r in alert_rules()] + dashboard_exprs()
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert used and used <= served, f"not served by the controller: {sorted(used - served)}"


def test_dashboard_panels_and_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "ssa-controller"
    assert [p["title"] for p in dashboard["panels"]] == PANELS
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance"}
    assert variables["job"]["current"]["value"] == METRICS_JOB
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == ROW:
            assert not panel.get("targets") and panel["gridPos"]["w"] == 24
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and panel.get("description")
        for target in panel["targets"]:
            used = set(re.findall(r"\$\w+", target["expr"]))
            assert used <= {"$job", "$instance", "$__rate_interval"}
            assert 'job="$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"]


def test_monitoring_kustomization_lists_everything() -> None:
    k = yaml.safe_load((MONITORING / "Kustomization").read_text())
    files = sorted(p.name for p in MONITORING.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    assert sorted(k["resources"]) == files
    [generator] = k["configMapGenerator"]
    assert generator["files"] == [f"ssa-controller.json=dashboards/{DASHBOARD.name}"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_builds_the_monitoring_kit_offline() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(MONITORING)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    configmap = next(d for d in built if d["kind"] == "ConfigMap")
    assert configmap["metadata"]["name"] == "ssa-controller-dashboard"
    assert json.loads(configmap["data"]["ssa-controller.json"]) == json.loads(DASHBOARD.read_text())
    assert sorted(d["kind"] for d in built if d["kind"] != "ConfigMap") == sorted(
        d["kind"] for d in monitoring_objects()
    )
