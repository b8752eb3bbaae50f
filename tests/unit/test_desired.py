"""Unit tests for ssa_controller.desired: the minimal apply body of an AppTask's Deployment."""

from __future__ import annotations

from typing import Any

import pytest

from ssa_controller import desired
from ssa_controller.desired import InvalidSpec

UID = "0b9c3f0e-7d1a-4c55-9d6e-2f1b8a0c4d21"
IMAGE = {"image": "nginx:1.25"}
OWNER_REF = {"apiVersion": "example.com/v1", "kind": "AppTask", "name": "web", "uid": UID,
             "controller": True, "blockOwnerDeletion": True}
"""As controller-runtime's SetControllerReference makes it: a foreground deletion of the
AppTask waits for its Deployment."""


def apptask(spec: dict[str, Any] | None = None, name: str = "web") -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": "demo", "uid": UID, "generation": 3,
                         "resourceVersion": "42"},
            "spec": IMAGE if spec is None else spec}


def container(body: dict[str, Any]) -> dict[str, Any]:
    [only] = body["spec"]["template"]["spec"]["containers"]
    return only


def render_with(**spec: Any) -> dict[str, Any]:
    return desired.render(apptask({**IMAGE, **spec}))


# --------------------------------------------------------------------------- render


def test_an_image_alone_renders_identity_owner_label_selector_and_container() -> None:
    assert desired.render(apptask()) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo",
                     "labels": {"app.kubernetes.io/managed-by": "ssa-controller"},
                     "ownerReferences": [OWNER_REF]},
        "spec": {
            "selector": {"matchLabels": {"apptasks.example.com/name": "web"}},
            "template": {"metadata": {"labels": {"apptasks.example.com/name": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
        },
    }


def test_a_full_spec_renders_exactly_what_it_sets() -> None:
    body = render_with(
        replicas=2, command=["nginx"], args=["-g", "daemon off;"],
        env=[{"name": "MODE", "value": "prod"}],
        ports=[{"name": "http", "containerPort": 80, "protocol": "TCP"},
               {"containerPort": 53, "protocol": "UDP"}],
        resources={"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
        labels={"tier": "web"}, annotations={"note": "x"}, paused=False)
    assert body["spec"]["replicas"] == 2
    assert body["spec"]["template"]["metadata"] == {
        "labels": {"tier": "web", "apptasks.example.com/name": "web"},
        "annotations": {"note": "x"}}
    assert container(body) == {
        "name": "app", "image": "nginx:1.25", "command": ["nginx"],
        "args": ["-g", "daemon off;"], "env": [{"name": "MODE", "value": "prod"}],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                  {"containerPort": 53, "protocol": "UDP"}],
        "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}}


def test_omitted_replicas_leave_replicas_to_others() -> None:
    assert "replicas" not in desired.render(apptask())["spec"]


def test_zero_replicas_are_rendered() -> None:
    assert render_with(replicas=0)["spec"]["replicas"] == 0


def test_empty_lists_maps_and_strings_are_left_out() -> None:
    body = render_with(command=[], args=[], env=[], ports=[], labels={}, annotations={},
                       resources={"requests": {}, "limits": {}})
    assert container(body) == {"name": "app", "image": "nginx:1.25"}
    assert body["spec"]["template"]["metadata"] == {
        "labels": {"apptasks.example.com/name": "web"}}


def test_env_with_an_empty_value_renders_without_value() -> None:
    env = [{"name": "EMPTY", "value": ""}, {"name": "UNSET"}]
    assert container(render_with(env=env))["env"] == [{"name": "EMPTY"}, {"name": "UNSET"}]


def test_port_protocol_defaults_to_tcp_and_an_empty_name_is_left_out() -> None:
    ports = container(render_with(ports=[{"containerPort": 8080, "name": ""}]))["ports"]
    assert ports == [{"containerPort": 8080, "protocol": "TCP"}]


def test_spec_labels_join_the_selector_label_on_the_pod_template() -> None:
    body = render_with(labels={"tier": "web"})
    assert body["spec"]["template"]["metadata"]["labels"] == {
        "tier": "web", "apptasks.example.com/name": "web"}
    assert body["spec"]["selector"] == {"matchLabels": {"apptasks.example.com/name": "web"}}


def test_a_name_of_63_characters_renders() -> None:
    name = "a" * 63
    assert desired.render(apptask(name=name))["metadata"]["name"] == name


# --------------------------------------------------------------------------- InvalidSpec


@pytest.mark.parametrize(("spec", "field"), [
    ({}, "image"),
    ({"image": "  "}, "image"),
    ({**IMAGE, "replicas": -1}, "replicas"),
    ({**IMAGE, "replicas": "3"}, "replicas"),
    ({**IMAGE, "replicas": True}, "replicas"),
    ({**IMAGE, "replicas": 2**31}, "replicas"),
    ({**IMAGE, "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "env[1].name"),
    ({**IMAGE, "env": [{"value": "1"}]}, "env[0].name"),
    ({**IMAGE, "ports": [{"containerPort": 0}]}, "ports[0].containerPort"),
    ({**IMAGE, "ports": [{"containerPort": 80}, {"containerPort": 65536}]},
     "ports[1].containerPort"),
    ({**IMAGE, "ports": [{"containerPort": "80"}]}, "ports[0].containerPort"),
    ({**IMAGE, "ports": [{"containerPort": 80, "protocol": "HTTP"}]}, "ports[0].protocol"),
    ({**IMAGE, "resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu"),
    ({**IMAGE, "resources": {"limits": {"memory": "1GB"}}}, "resources.limits.memory"),
    ({**IMAGE, "labels": {"apptasks.example.com/name": "other"}}, "labels"),
])
def test_an_invalid_spec_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        desired.render(apptask(spec))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"spec.{field}: ")


def test_a_name_longer_than_63_characters_is_invalid() -> None:
    with pytest.raises(InvalidSpec, match="metadata.name"):
        desired.render(apptask(name="a" * 64))


def test_invalid_spec_is_a_value_error() -> None:
    assert issubclass(InvalidSpec, ValueError)


# --------------------------------------------------------------------------- controller_ref


def deployment_with(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "demo", "ownerReferences": list(refs)}}


def test_controller_ref_finds_the_controlling_apptask() -> None:
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u"}
    assert desired.controller_ref(deployment_with(other, OWNER_REF)) == OWNER_REF


def test_the_body_rendered_for_an_apptask_points_back_at_it() -> None:
    assert desired.controller_ref(desired.render(apptask())) == OWNER_REF


@pytest.mark.parametrize("ref", [
    {**OWNER_REF, "controller": False},
    {k: v for k, v in OWNER_REF.items() if k != "controller"},
    {**OWNER_REF, "kind": "ReplicaSet", "apiVersion": "apps/v1"},
    {**OWNER_REF, "apiVersion": "other.example.com/v1"},
])
def test_controller_ref_ignores_other_references(ref: dict[str, Any]) -> None:
    assert desired.controller_ref(deployment_with(ref)) is None


def test_controller_ref_of_an_object_without_references_is_none() -> None:
    assert desired.controller_ref({"metadata": {"name": "web"}}) is None
