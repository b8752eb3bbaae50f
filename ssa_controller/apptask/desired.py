"""Renders an AppTask into the minimal server-side apply body of its Deployment. Pure, no I/O.

The body holds only what the controller owns: identity, the owner reference (the controller
reference with blockOwnerDeletion, as controller-runtime's SetControllerReference makes it), the
managed-by label (with sharding, the shard label too: `child_metadata`, every child's), the
selector, the Pod Security Standard "restricted" settings
(`podTemplate.restricted`), and exactly the fields the AppTask specifies. No nulls, no empty
values, no other defaults the user did not ask for (a port's protocol is always sent: it is part
of the list key the API server merges ports by, and the CRD defaults it to TCP anyway). Creating
an AppTask must not give more than creating such a Deployment: label and annotation keys that
Kubernetes, service meshes or agents act on (`podTemplate.reservedKeys`, `allowedKeys`) are
refused as InvalidSpec. The workload fields (probes, volumes, scheduling, strategy...) are
copied where the Deployment has them once their shapes are checked (fields.py), the restricted
settings under the spec's own securityContext fields, and the pod is held to the `admission`
rules (admission.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..settings.config import AdmissionConfig, PodTemplateConfig, merged
from . import admission, fields
from .shapes import InvalidSpec as InvalidSpec
from .shapes import Shape, expect, is_quantity

API_GROUP = "example.com"
API_VERSION = "example.com/v1"
KIND = "AppTask"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "ssa-controller"
NAME_LABEL = "apptasks.example.com/name"
SHARD_LABEL = "apptasks.example.com/shard"
"""With sharding: the shard an AppTask is assigned to, on the AppTask (the sharder's) and on
every child it renders (so that a shard's watches select its share only)."""
SHARD_PATH = ("f:metadata", "f:labels", f"f:{SHARD_LABEL}")
"""The shard label's path in a child's managedFields: it changes when its AppTask moves between
shards, by the controller's own doing."""
CONTAINER_NAME = "app"
PROTOCOLS = ("TCP", "UDP", "SCTP")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
KUBERNETES_PREFIXES = ("kubernetes.io/", "k8s.io/")
"""Reserved for Kubernetes' own components, with their subdomains (node-role.kubernetes.io,
AppArmor and seccomp annotations, pod-security.kubernetes.io), except:"""
SHARED_PREFIX = "app.kubernetes.io/"
"""the recommended labels, shared with users and tools: only MANAGED_BY_LABEL is always
reserved (podTemplate.reservedKeys reserves the rest by default)."""
OWN_PREFIX = NAME_LABEL.split("/")[0] + "/"
DEFAULT_TEMPLATE = PodTemplateConfig()


def _restricted_pod() -> dict[str, Any]:
    """The Pod Security Standard "restricted" settings the spec has no field for, of the pod:
    no service-account token (an AppTask's pods never talk to the API server as the namespace's
    default account), non-root, the runtime's seccomp profile."""
    return {"automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"}}}


def _restricted_container() -> dict[str, Any]:
    """... and of its container: no privilege escalation, no capabilities."""
    return {"securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}}}


def _string_list(spec: Mapping[str, Any], field: str) -> list[str]:
    value = spec.get(field) or []
    expect(isinstance(value, list) and all(isinstance(v, str) for v in value), field,
            "must be a list of strings")
    return list(value)


def _string_map(spec: Mapping[str, Any], field: str) -> dict[str, str]:
    value = spec.get(field) or {}
    expect(isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in value.items()), field,
            "must be a map of strings to strings")
    return dict(value)


def _list(spec: Mapping[str, Any], field: str) -> list[Any]:
    value = spec.get(field) or []
    expect(isinstance(value, list), field, "must be a list")
    return list(value)


def _env(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, item in enumerate(_list(spec, "env")):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidSpec(f"env[{i}].name", "is required")
        expect(name not in names, f"env[{i}].name", f"duplicate name {name!r}")
        names.add(name)
        value = item.get("value", "")
        expect(isinstance(value, str), f"env[{i}].value", "must be a string")
        entry: dict[str, Any] = {"name": name, "value": value} if value else {"name": name}
        if item.get("valueFrom") is not None:
            entry["valueFrom"] = fields.ENV_SOURCE.check(item["valueFrom"], f"env[{i}].valueFrom")
        rendered.append(entry)
    return rendered


def _ports(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for i, item in enumerate(_list(spec, "ports")):
        expect(isinstance(item, Mapping), f"ports[{i}]", "must be an object")
        port = item.get("containerPort")
        expect(isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535,
                f"ports[{i}].containerPort", "must be an integer in 1..65535")
        protocol = item.get("protocol") or "TCP"
        expect(protocol in PROTOCOLS, f"ports[{i}].protocol", f"must be one of {PROTOCOLS}")
        entry: dict[str, Any] = {"containerPort": port, "protocol": protocol}
        if item.get("name"):
            entry["name"] = item["name"]
        rendered.append(entry)
    return rendered


def _matches(key: str, pattern: str) -> bool:
    """Whether a label or annotation key matches a pattern: "prefix/" matches every key under
    that prefix or a subdomain of it, any other pattern only the key itself."""
    if not pattern.endswith("/"):
        return key == pattern
    prefix, slash, _ = key.rpartition("/")
    domain = pattern[:-1]
    return bool(slash) and (prefix == domain or prefix.endswith("." + domain))


def _refusal(key: str, template: PodTemplateConfig) -> str | None:
    """Why the pod template may not carry the label or annotation `key`; None if it may."""
    if key == MANAGED_BY_LABEL or _matches(key, OWN_PREFIX):
        return "is reserved for the controller"
    if not _matches(key, SHARED_PREFIX) and any(_matches(key, p) for p in KUBERNETES_PREFIXES):
        return "is reserved for Kubernetes (kubernetes.io/, k8s.io/)"
    reserved = next((p for p in template.reserved_keys if _matches(key, p)), None)
    if reserved is not None:
        return f"is reserved (podTemplate.reservedKeys: {reserved})"
    if template.allowed_keys and not any(_matches(key, p) for p in template.allowed_keys):
        return f"is not allowed (podTemplate.allowedKeys: {', '.join(template.allowed_keys)})"
    return None


def _keys(spec: Mapping[str, Any], field: str, template: PodTemplateConfig) -> dict[str, str]:
    """The labels or annotations of the spec; InvalidSpec naming the first key (in order) the
    template may not carry."""
    value = _string_map(spec, field)
    for key in sorted(value):
        why = _refusal(key, template)
        expect(why is None, field, f"key {key!r} {why}")
    return value


def _resources(spec: Mapping[str, Any]) -> dict[str, dict[str, str | int]]:
    value = spec.get("resources") or {}
    expect(isinstance(value, Mapping), "resources", "must be an object")
    rendered: dict[str, dict[str, str | int]] = {}
    for kind in ("requests", "limits"):
        amounts = value.get(kind) or {}
        expect(isinstance(amounts, Mapping), f"resources.{kind}", "must be a map")
        for name, amount in amounts.items():
            expect(is_quantity(amount), f"resources.{kind}.{name}",
                    f"{amount!r} is not a quantity")
        if amounts:
            rendered[kind] = dict(amounts)
    unknown = set(value) - {"requests", "limits"}
    expect(not unknown, "resources", f"unknown fields {sorted(unknown)}")
    return rendered


def _set(spec: Mapping[str, Any], shapes: Mapping[str, Shape]) -> dict[str, Any]:
    """The spec's fields among `shapes` that are set (null and empty values are not), checked."""
    return {name: shape.check(spec[name], name) for name, shape in shapes.items()
            if spec.get(name) not in (None, "", [], {})}


def _container(spec: Mapping[str, Any], restricted: bool) -> dict[str, Any]:
    image = spec.get("image")
    expect(isinstance(image, str) and bool(image.strip()), "image", "is required")
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": image}
    for field, value in (("command", _string_list(spec, "command")),
                         ("args", _string_list(spec, "args")), ("env", _env(spec)),
                         ("ports", _ports(spec)), ("resources", _resources(spec))):
        if value:
            container[field] = value
    container.update(_set(spec, fields.CONTAINER))
    return merged(_restricted_container(), container) if restricted else container


def _pod(spec: Mapping[str, Any], restricted: bool) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [_container(spec, restricted)]}
    pod.update((fields.POD_NAMES.get(name, name), value)
               for name, value in _set(spec, fields.POD).items())
    return merged(_restricted_pod(), pod) if restricted else pod


def _replicas(spec: Mapping[str, Any]) -> int | None:
    replicas = spec.get("replicas")
    expect(replicas is None or (isinstance(replicas, int) and not isinstance(replicas, bool)
                                 and 0 <= replicas <= 2**31 - 1),
            "replicas", "must be a non-negative integer")
    return replicas


def child_metadata(apptask: Mapping[str, Any], shard: str | None = None) -> dict[str, Any]:
    """The metadata of a child's apply body: its AppTask's name and namespace, the managed-by
    label (and, with sharding, the shard label naming `shard`), the controller reference."""
    meta = apptask["metadata"]
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    if shard is not None:
        labels[SHARD_LABEL] = shard
    return {"name": meta["name"], "namespace": meta["namespace"], "labels": labels,
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                                 "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]}


def render(apptask: Mapping[str, Any], template: PodTemplateConfig = DEFAULT_TEMPLATE,
           rules: AdmissionConfig = admission.DEFAULT, shard: str | None = None
           ) -> dict[str, Any]:
    """The apply body of the Deployment for `apptask` under the `podTemplate` settings and the
    `admission` rules, applied by the shard `shard` (None: no sharding); raises InvalidSpec."""
    name = apptask["metadata"]["name"]
    expect(len(name) <= 63 and bool(_LABEL_VALUE.match(name)), "",
            f"metadata.name {name!r} must be a valid label value (at most 63 characters)")
    spec = apptask.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidSpec("", "spec is required")
    labels = _keys(spec, "labels", template)
    annotations = _keys(spec, "annotations", template)
    selector = pod_selector(apptask)
    template_meta: dict[str, Any] = {"labels": {**labels, **selector}}
    if annotations:
        template_meta["annotations"] = annotations
    deployment_spec: dict[str, Any] = {}
    replicas = _replicas(spec)
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    deployment_spec["selector"] = {"matchLabels": selector}
    pod = _pod(spec, template.restricted)
    admission.check_pod(pod, rules)
    deployment_spec["template"] = {"metadata": template_meta, "spec": pod}
    deployment_spec.update(_set(spec, fields.DEPLOYMENT))
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": child_metadata(apptask, shard), "spec": deployment_spec}


def pod_selector(apptask: Mapping[str, Any]) -> dict[str, str]:
    """The labels that select the AppTask's pods (its Deployment's selector, its Service's)."""
    return {NAME_LABEL: apptask["metadata"]["name"]}


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The controller ownerReference of `obj` when it points at an AppTask, else None."""
    ref: Mapping[str, Any]
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == KIND \
                and str(ref.get("apiVersion", "")).startswith(API_GROUP + "/"):
            return ref
    return None
