"""The workload fields' shapes (apptask.fields, apptask.shapes): the CRD states each field as
its shape does, so the renderer checks what the API server checks; and how shapes check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ssa_controller.apptask import fields
from ssa_controller.apptask.shapes import (
    INT64,
    Bool,
    Int,
    IntOrStr,
    InvalidSpec,
    List,
    Map,
    Obj,
    Opaque,
    Quantity,
    Shape,
    Str,
)

CRD = Path(__file__).resolve().parents[2] / "manifests" / "crd.yaml"


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def undescribed(node: Any) -> Any:
    """A schema without its descriptions."""
    if isinstance(node, dict):
        return {k: undescribed(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [undescribed(v) for v in node]
    return node


SHAPED = {**fields.CONTAINER, **fields.POD, **fields.DEPLOYMENT, "service": fields.SERVICE}


@pytest.mark.parametrize("name", sorted(SHAPED))
def test_the_crd_states_each_workload_field_as_its_shape(name: str) -> None:
    stated = undescribed(spec_schema()["properties"][name])
    expected = SHAPED[name].openapi()
    assert stated == expected, (
        f"manifests/crd.yaml's spec.{name} should be (descriptions aside):\n"
        + yaml.safe_dump({name: expected}, sort_keys=False))


def test_the_crd_states_an_env_source_as_its_shape() -> None:
    env = spec_schema()["properties"]["env"]["items"]["properties"]
    assert undescribed(env["valueFrom"]) == fields.ENV_SOURCE.openapi()


def test_every_workload_field_is_described() -> None:
    properties = spec_schema()["properties"]
    assert [n for n in SHAPED if not properties[n].get("description")] == []


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("shape", "value", "message"), [
    (Str(3), 5, "must be a string"),
    (Str(3), "abcd", "must be 0 to 3 characters long"),
    (Str(8, enum=("Always", "Never")), "always", "must be one of Always, Never"),
    (Int(1, 10), 0, "must be an integer in 1..10"),
    (Int(1, 10), True, "must be an integer in 1..10"),
    (Int(1, 10), 2.0, "must be an integer in 1..10"),
    (Bool(), "true", "must be true or false"),
    (Bool(only=False), True, "may only be false"),
    (IntOrStr(15, 1, 65535), 0, "must be an integer in 1..65535"),
    (IntOrStr(15, 1, 65535), "", "must be 1 to 15 characters long"),
    (IntOrStr(15, 1, 65535), None, "must be an integer in 1..65535"),
    (Quantity(), "1GB", "'1GB' is not a quantity"),
    (Quantity(), 2**64, "is not a quantity"),
    (Obj({"a": Int()}), [], "must be an object"),
    (Obj({"a": Int()}), {"b": 1}, "unknown fields ['b']"),
    (Obj({"a": Int(), "b": Int()}, one_of=("a", "b")), {}, "must set exactly one of a, b"),
    (Obj({"a": Int(), "b": Int()}, one_of=("a", "b")), {"a": 1, "b": 2},
     "must set exactly one of a, b"),
    (List(Int(), 2), [1, 2, 3], "must have 0 to 2 items"),
    (List(Int(), 2, min_items=1), [], "must have 1 to 2 items"),
    (List(Int(), 2), {"a": 1}, "must be a list"),
    (Map(Str(3), 1), {"a": "x", "b": "y"}, "must have at most 1 entries"),
    (Map(Str(3), 1), {1: "x"}, "must be a map"),
    (Opaque(), [], "must be an object"),
    (Opaque(), {"a": [{"b": 2**64}]}, "must be a JSON value"),
    (Opaque(), {"a": {1: "x"}}, "must have string keys"),
])
def test_a_value_out_of_its_shape_is_invalid_naming_the_field(
        shape: Shape, value: Any, message: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        shape.check(value, "field")
    assert raised.value.field.startswith("field")
    assert message in str(raised.value)


def test_a_missing_required_field_is_named() -> None:
    with pytest.raises(InvalidSpec) as raised:
        Obj({"a": Obj({"b": Int()}, ("b",))}).check({"a": {}}, "x")
    assert str(raised.value) == "spec.x.a.b: is required"


def test_a_keyed_list_refuses_a_duplicate_key_naming_the_item() -> None:
    shape = List(Obj({"k": Str(3), "v": Int()}, ("k",)), 8, keys=("k",))
    with pytest.raises(InvalidSpec) as raised:
        shape.check([{"k": "a", "v": 1}, {"k": "b"}, {"k": "a"}], "items")
    assert str(raised.value) == "spec.items[2]: duplicate k 'a'"


def test_nulls_are_dropped_and_defaults_filled_in_as_the_server_does() -> None:
    shape = Obj({"port": Int(), "protocol": Str(4, default="TCP"), "name": Str(15)})
    assert shape.check({"port": 80, "name": None}, "p") == {"port": 80, "protocol": "TCP"}


def test_a_pass_through_value_nested_too_deeply_is_invalid() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidSpec, match="nests deeper than 16 levels"):
        Opaque().check(deep, "affinity.nodeAffinity")


def test_a_pass_through_value_is_rendered_as_it_is() -> None:
    value = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "k", "operator": "In", "values": ["a"]}]}]},
        "weight": 1, "x": None, "f": 1.5, "b": True, "n": INT64[1]}
    assert Opaque().check(value, "affinity.nodeAffinity") == value
