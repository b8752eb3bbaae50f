"""Renders an AppTask into the minimal server-side apply body of its Deployment. Pure, no I/O.

The body holds only what the controller owns: identity, the owner reference (the controller
reference with blockOwnerDeletion, as controller-runtime's SetControllerReference makes it), the
managed-by label, the selector, and exactly the fields the AppTask specifies. No nulls, no empty
values, no defaults the user did not ask for (a port's protocol is always sent: it is part of
the list key the API server merges ports by, and the CRD defaults it to TCP anyway).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import quantity

API_GROUP = "example.com"
API_VERSION = "example.com/v1"
KIND = "AppTask"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "ssa-controller"
NAME_LABEL = "apptasks.example.com/name"
CONTAINER_NAME = "app"
PROTOCOLS = ("TCP", "UDP", "SCTP")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class InvalidSpec(ValueError):
    """The AppTask's spec cannot be rendered; retrying cannot fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}" if field else message)
        self.field = field


def _expect(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise InvalidSpec(field, message)


def _string_list(spec: Mapping[str, Any], field: str) -> list[str]:
    value = spec.get(field) or []
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), field,
            "must be a list of strings")
    return list(value)


def _string_map(spec: Mapping[str, Any], field: str) -> dict[str, str]:
    value = spec.get(field) or {}
    _expect(isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in value.items()), field,
            "must be a map of strings to strings")
    return dict(value)


def _list(spec: Mapping[str, Any], field: str) -> list[Any]:
    value = spec.get(field) or []
    _expect(isinstance(value, list), field, "must be a list")
    return list(value)


def _env(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    rendered: list[dict[str, str]] = []
    for i, item in enumerate(_list(spec, "env")):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidSpec(f"env[{i}].name", "is required")
        _expect(name not in {e["name"] for e in rendered}, f"env[{i}].name",
                f"duplicate name {name!r}")
        value = item.get("value", "")
        _expect(isinstance(value, str), f"env[{i}].value", "must be a string")
        rendered.append({"name": name, "value": value} if value else {"name": name})
    return rendered


def _ports(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for i, item in enumerate(_list(spec, "ports")):
        _expect(isinstance(item, Mapping), f"ports[{i}]", "must be an object")
        port = item.get("containerPort")
        _expect(isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535,
                f"ports[{i}].containerPort", "must be an integer in 1..65535")
        protocol = item.get("protocol") or "TCP"
        _expect(protocol in PROTOCOLS, f"ports[{i}].protocol", f"must be one of {PROTOCOLS}")
        entry: dict[str, Any] = {"containerPort": port, "protocol": protocol}
        if item.get("name"):
            entry["name"] = item["name"]
        rendered.append(entry)
    return rendered


def _resources(spec: Mapping[str, Any]) -> dict[str, dict[str, str | int]]:
    value = spec.get("resources") or {}
    _expect(isinstance(value, Mapping), "resources", "must be an object")
    rendered: dict[str, dict[str, str | int]] = {}
    for kind in ("requests", "limits"):
        amounts = value.get(kind) or {}
        _expect(isinstance(amounts, Mapping), f"resources.{kind}", "must be a map")
        for name, amount in amounts.items():
            _expect(isinstance(amount, (str, int)) and quantity.parse(amount) is not None,
                    f"resources.{kind}.{name}", f"{amount!r} is not a quantity")
        if amounts:
            rendered[kind] = dict(amounts)
    unknown = set(value) - {"requests", "limits"}
    _expect(not unknown, "resources", f"unknown fields {sorted(unknown)}")
    return rendered


def _container(spec: Mapping[str, Any]) -> dict[str, Any]:
    image = spec.get("image")
    _expect(isinstance(image, str) and bool(image.strip()), "image", "is required")
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": image}
    for field, value in (("command", _string_list(spec, "command")),
                         ("args", _string_list(spec, "args")), ("env", _env(spec)),
                         ("ports", _ports(spec)), ("resources", _resources(spec))):
        if value:
            container[field] = value
    return container


def _replicas(spec: Mapping[str, Any]) -> int | None:
    replicas = spec.get("replicas")
    _expect(replicas is None or (isinstance(replicas, int) and not isinstance(replicas, bool)
                                 and 0 <= replicas <= 2**31 - 1),
            "replicas", "must be a non-negative integer")
    return replicas


def render(apptask: Mapping[str, Any]) -> dict[str, Any]:
    """The apply body of the Deployment for `apptask`; raises InvalidSpec."""
    meta = apptask["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    _expect(len(name) <= 63 and bool(_LABEL_VALUE.match(name)), "",
            f"metadata.name {name!r} must be a valid label value (at most 63 characters)")
    spec = apptask.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidSpec("", "spec is required")
    labels = _string_map(spec, "labels")
    _expect(NAME_LABEL not in labels, "labels", f"{NAME_LABEL} is reserved")
    annotations = _string_map(spec, "annotations")
    selector = {NAME_LABEL: name}
    template_meta: dict[str, Any] = {"labels": {**labels, **selector}}
    if annotations:
        template_meta["annotations"] = annotations
    deployment_spec: dict[str, Any] = {}
    replicas = _replicas(spec)
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    deployment_spec["selector"] = {"matchLabels": selector}
    deployment_spec["template"] = {"metadata": template_meta,
                                   "spec": {"containers": [_container(spec)]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND, "name": name,
                                 "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": deployment_spec,
    }


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The controller ownerReference of `obj` when it points at an AppTask, else None."""
    ref: Mapping[str, Any]
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == KIND \
                and str(ref.get("apiVersion", "")).startswith(API_GROUP + "/"):
            return ref
    return None
