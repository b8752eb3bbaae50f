"""Unit tests for apptask.service: the minimal apply body of an AppTask's Service (how the
engine owns it: test_reconciler_service.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ssa_controller.apptask import desired, service
from ssa_controller.apptask.shapes import InvalidSpec
from ssa_controller.runtime import fieldset
from ssa_controller.settings.config import AdmissionConfig

UID = "0b9c3f0e-7d1a-4c55-9d6e-2f1b8a0c4d21"
OWNER_REF = {"apiVersion": "example.com/v1", "kind": "AppTask", "name": "web", "uid": UID,
             "controller": True, "blockOwnerDeletion": True}
PORTS = [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]


def apptask(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": "web", "namespace": "demo", "uid": UID, "generation": 1},
            "spec": {"image": "nginx:1.25", **spec}}


def ports_of(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    assert body is not None
    return list(body["spec"]["ports"])


def test_a_spec_without_a_service_has_none() -> None:
    assert service.render(apptask(ports=PORTS)) is None


def test_a_service_renders_identity_owner_label_selector_and_ports() -> None:
    assert service.render(apptask(service={"ports": [{"port": 80}]})) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "demo",
                     "labels": {"app.kubernetes.io/managed-by": "ssa-controller"},
                     "ownerReferences": [OWNER_REF]},
        "spec": {"selector": {"apptasks.example.com/name": "web"},
                 "ports": [{"port": 80, "protocol": "TCP"}]},
    }


def test_the_service_and_the_deployment_share_their_metadata_and_select_the_same_pods() -> None:
    task = apptask(service={"ports": [{"port": 80}]})
    body, deployment = service.render(task), desired.render(task)
    assert body is not None
    assert body["metadata"] == deployment["metadata"] == desired.child_metadata(task)
    assert body["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] \
        == deployment["spec"]["template"]["metadata"]["labels"]


def test_type_and_annotations_are_rendered_where_the_service_has_them() -> None:
    body = service.render(apptask(service={
        "type": "NodePort", "annotations": {"example.com/lb": "internal"},
        "ports": [{"port": 80, "nodePort": 30080, "protocol": "UDP"}]}))
    assert body is not None
    assert body["spec"]["type"] == "NodePort"
    assert body["metadata"]["annotations"] == {"example.com/lb": "internal"}
    assert ports_of(body) == [{"port": 80, "nodePort": 30080, "protocol": "UDP"}]


def test_a_named_port_targets_the_container_port_of_its_name() -> None:
    body = service.render(apptask(ports=PORTS, service={"ports": [
        {"name": "metrics", "port": 9000}, {"name": "http", "port": 80}]}))
    assert ports_of(body) == [
        {"name": "metrics", "port": 9000, "protocol": "TCP", "targetPort": 9090},
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]


@pytest.mark.parametrize("port", [
    {"name": "http", "port": 80, "targetPort": "web"},
    {"name": "http", "port": 80, "targetPort": 8443},
    {"name": "admin", "port": 80},  # no container port of that name: the server's default
    {"port": 80},
])
def test_a_target_port_set_or_without_a_named_container_port_is_left_as_it_is(
        port: dict[str, Any]) -> None:
    assert ports_of(service.render(apptask(ports=PORTS, service={"ports": [port]}))) == [
        {**port, "protocol": "TCP"}]


@pytest.mark.parametrize(("spec", "field"), [
    ({"ports": []}, "service.ports"),
    ({}, "service.ports"),
    ({"ports": [{"port": 0}]}, "service.ports[0].port"),
    ({"type": "ExternalName", "ports": [{"port": 80}]}, "service.type"),
    ({"ports": [{"port": 80}, {"port": 80}]}, "service.ports[1]"),
    ({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}, "service.ports"),
    ({"ports": [{"port": 80}], "annotations": {"a": 1}}, "service.annotations.a"),
])
def test_a_service_the_schema_refuses_is_invalid_naming_the_field(spec: dict[str, Any],
                                                                 field: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        service.render(apptask(service=spec))
    assert refused.value.field == field


def test_a_type_the_admission_rules_do_not_allow_is_invalid() -> None:
    rules = AdmissionConfig(service_types=("ClusterIP",))
    with pytest.raises(InvalidSpec, match="LoadBalancer is not allowed"):
        service.render(apptask(service={"type": "LoadBalancer", "ports": [{"port": 80}]}),
                       rules)


def test_the_body_owns_its_ports_by_port_and_protocol() -> None:
    body = service.render(apptask(service={"ports": [{"port": 80}, {"port": 80,
                                                                    "protocol": "UDP"}]}))
    assert body is not None
    ports = {p[2] for p in fieldset.body_paths(body) if p[:2] == ("f:spec", "f:ports")}
    assert ports == {'k:{"port":80,"protocol":"TCP"}', 'k:{"port":80,"protocol":"UDP"}'}


def test_a_shard_labels_the_service_as_it_labels_the_deployment() -> None:
    task = apptask(service={"ports": [{"port": 80}]})
    body = service.render(task, shard="shard-a")
    assert body is not None
    assert body["metadata"] == desired.child_metadata(task, "shard-a")
    assert body["metadata"]["labels"]["apptasks.example.com/shard"] == "shard-a"
    assert "apptasks.example.com/shard" not in str(body["spec"])  # not in the pods' selector
