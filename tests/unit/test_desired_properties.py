"""Property-based tests of the pure renderer (apptask.desired.render), with hypothesis.

For every AppTask, whether the CRD schema (manifests/crd.yaml) admits its spec or not, render()
either returns an apply body or raises InvalidSpec: never another exception, which would be a
"reconcile crashed" in the controller, retried for ever. Specs come from two strategies:

- `admitted_specs`: what the structural schema lets through (the server's own validation decides
  in tests/integration/test_bad_input.py): unicode strings, up to 500 env vars with unique names,
  quantities matching the schema's pattern (huge and tiny ones included) or any integer, any
  port 1..65535 with any protocol, duplicate ports (the ports list is atomic), the reserved label;
  and every workload field (probes, volumes, scheduling, strategy...) as manifests/crd.yaml's
  schema states it, generated from that schema (`admitted`), not from the renderer's shapes.
- `wild_specs`: any JSON for any field (what a schema-less or older API could hand over):
  wrong types, nulls, nested lists and maps, duplicate list keys, out-of-range numbers.

Runs are derandomized (a fixed seed per test) so that CI is stable; raise HYPOTHESIS_EXAMPLES to
search longer locally.
"""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from workload_fields import at, where

from ssa_controller.apptask import desired, drift, fields, quantity
from ssa_controller.apptask.desired import InvalidSpec
from ssa_controller.client.wire import APPLY_PATCH, encode_body
from ssa_controller.runtime import fieldset
from ssa_controller.settings.config import AdmissionConfig, PodTemplateConfig

UID = "5f0c1b1e-0000-4000-8000-000000000001"
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "100"))
STABLE = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
QUANTITY_PATTERN = (r"(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
                    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?")
"""The schema's pattern for resources.requests / limits strings (manifests/crd.yaml)."""
NAME_PART = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"

# --------------------------------------------------------------------------- strategies

unicode_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
nonempty_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1,
                        max_size=40)

# AppTask names as the server admits them (a DNS-1123 subdomain, up to 253 characters): short
# ones, exactly 63 characters (the longest label value), 64 and more (too long for the selector
# label: InvalidSpec), dotted ones.
names = st.one_of(
    st.from_regex(rf"\A{NAME_PART}\Z"),
    st.just("a" * 63), st.just("a" * 62 + "9"), st.just("a" * 64),
    st.from_regex(rf"\A{NAME_PART}(\.{NAME_PART}){{1,3}}\Z"),
).filter(lambda n: len(n) <= 253)

quantities = st.one_of(
    st.from_regex(rf"\A{QUANTITY_PATTERN}\Z"),
    st.integers(),  # int-or-string: any integer, however large or negative
    st.sampled_from(["1e308", "1e-308", "1e999999999", "1E-999999999", "0.000000001n", "999Ei",
                     "1e+5", ".5", "5.", "+1", "-1", "0", "1e1.5", "1e.5",
                     "123456789012345678901234567890"]),
)

env_vars = st.lists(
    st.fixed_dictionaries({"name": nonempty_text}, optional={"value": unicode_text}),
    max_size=12, unique_by=lambda e: e["name"])

ports = st.lists(
    st.fixed_dictionaries(
        {"containerPort": st.integers(1, 65535)},
        optional={"protocol": st.sampled_from(["TCP", "UDP", "SCTP"]),
                  "name": st.text(max_size=15)}),
    max_size=6)

string_maps = st.dictionaries(unicode_text, unicode_text, max_size=6)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False), unicode_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
    max_leaves=12)

api_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), unicode_text),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
    max_leaves=12)
CRD = Path(__file__).resolve().parents[2] / "manifests" / "crd.yaml"
SPEC_SCHEMA = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"]["properties"]["spec"]
WORKLOAD = (*fields.CONTAINER, *fields.POD, *fields.DEPLOYMENT)


def admitted(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a structural schema admits: its types, bounds (lists and maps cut to 4 entries,
    strings to 40 characters), enums, list-map keys unique as defaulted, exactly one branch of
    a oneOf of required fields; anything JSON where it preserves unknown fields."""
    if schema.get("x-kubernetes-int-or-string"):
        if "pattern" in schema:
            return quantities
        return st.one_of(st.integers(schema["minimum"], schema["maximum"]),
                         st.text(min_size=schema["minLength"], max_size=schema["maxLength"]))
    if schema.get("x-kubernetes-preserve-unknown-fields"):  # as the server reads JSON
        return st.dictionaries(unicode_text, api_json_values, max_size=3)
    kind = schema["type"]
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "string":
        return st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]),
                       min_size=schema.get("minLength", 0), max_size=min(schema["maxLength"], 40))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**63)), schema.get("maximum", 2**63 - 1))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        item = schema["items"]
        defaults = {k: item["properties"][k].get("default") for k in keys}
        return st.lists(admitted(item), min_size=schema.get("minItems", 0),
                        max_size=min(schema["maxItems"], 4),
                        unique_by=(lambda x: tuple(x.get(k, defaults[k]) for k in keys))
                        if keys else None)
    if "additionalProperties" in schema:
        return st.dictionaries(nonempty_text, admitted(schema["additionalProperties"]),
                               max_size=min(schema["maxProperties"], 4))
    properties, required = schema["properties"], schema.get("required", [])
    union = [branch["required"][0] for branch in schema.get("oneOf", [])]
    optional = {k: admitted(v) for k, v in properties.items()
                if k not in required and k not in union}
    return st.one_of([st.fixed_dictionaries(
        {k: admitted(properties[k]) for k in [*required, *([chosen] if chosen else [])]},
        optional=optional) for chosen in union or [None]])


admitted_specs = st.fixed_dictionaries(
    {"image": nonempty_text},
    optional={
        "replicas": st.integers(0, 2**31 - 1),
        "command": st.lists(unicode_text, max_size=5),
        "args": st.lists(unicode_text, max_size=5),
        "env": env_vars,
        "ports": ports,
        "resources": st.fixed_dictionaries({}, optional={
            "requests": st.dictionaries(unicode_text, quantities, max_size=4),
            "limits": st.dictionaries(unicode_text, quantities, max_size=4)}),
        "labels": st.one_of(string_maps, st.just({desired.NAME_LABEL: "mine"})),
        "annotations": string_maps,
        "paused": st.booleans(),
        **{name: admitted(SPEC_SCHEMA["properties"][name]) for name in WORKLOAD},
    })


def _near(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's valid value, any JSON, or a list of anything (a wrong type one level down)."""
    return st.one_of(valid, json_values, st.lists(json_values, max_size=4))


wild_env_item = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"name": json_values, "value": json_values}))
wild_port = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "containerPort": st.one_of(st.integers(-(2**40), 2**40), json_values),
        "protocol": st.one_of(st.sampled_from(["TCP", "tcp", "HTTP", ""]), json_values),
        "name": json_values}))
wild_specs = st.fixed_dictionaries({}, optional={
    "image": _near(nonempty_text),
    "replicas": _near(st.integers(-(2**40), 2**40)),
    "command": _near(st.lists(unicode_text)),
    "args": _near(st.lists(unicode_text)),
    # duplicate names (the list-map key), missing names, items of any type
    "env": _near(st.lists(wild_env_item, max_size=6)) | st.lists(
        st.fixed_dictionaries({"name": st.sampled_from(["A", "B"]), "value": unicode_text}),
        min_size=2, max_size=4),
    "ports": _near(st.lists(wild_port, max_size=5)),
    "resources": _near(st.fixed_dictionaries({}, optional={
        "requests": st.dictionaries(unicode_text, _near(quantities), max_size=3),
        "limits": _near(st.dictionaries(unicode_text, quantities, max_size=3)),
        "claims": json_values})),
    "labels": _near(string_maps),
    "annotations": _near(string_maps),
    "paused": json_values,
    "unknown": json_values,
    **{name: _near(json_values) for name in WORKLOAD},
})


def apptask(name: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": "demo", "uid": UID, "generation": 1},
            "spec": spec}


def render_or_invalid(obj: dict[str, Any]) -> dict[str, Any] | InvalidSpec:
    """render(obj), or the InvalidSpec it raised; any other exception fails the test."""
    try:
        return desired.render(obj)
    except InvalidSpec as exc:
        return exc


def check_body(name: str, spec: Any, body: dict[str, Any]) -> None:
    """What every rendered body must be: JSON, minimal, owned, selecting its own pods."""
    json.dumps(body, allow_nan=False)
    assert body["metadata"]["name"] == name
    assert body["metadata"]["ownerReferences"][0]["uid"] == UID
    selector = body["spec"]["selector"]["matchLabels"]
    assert selector == {desired.NAME_LABEL: name}
    template = body["spec"]["template"]
    assert template["metadata"]["labels"][desired.NAME_LABEL] == name
    [container] = template["spec"]["containers"]
    assert container["image"] == spec["image"]
    assert not any(v in (None, "", [], {}) for v in container.values())


def check_invalid(exc: InvalidSpec) -> None:
    text = str(exc)
    assert text and "\n" not in text
    assert text.startswith(("spec.", "metadata.name", "spec is required")), text


# --------------------------------------------------------------------------- properties


@STABLE
@given(name=names, spec=admitted_specs)
@example(name="a" * 63, spec={"image": "nginx", "env": [{"name": f"V{i}", "value": "é" * 3}
                                                         for i in range(500)]})
@example(name="a" * 64, spec={"image": "nginx"})
@example(name="web", spec={"image": "nginx", "resources": {"limits": {"cpu": "1e999999999"}}})
@example(name="web", spec={"image": "nginx",
                           "ports": [{"containerPort": 80}, {"containerPort": 80}]})
def test_admitted_specs_render_or_are_invalid_never_crash(name: str, spec: dict[str, Any]) -> None:
    result = render_or_invalid(apptask(name, spec))
    if isinstance(result, InvalidSpec):
        check_invalid(result)
        return
    check_body(name, spec, result)
    assert result == desired.render(apptask(name, spec)), "rendering is deterministic"


@STABLE
@given(name=names.filter(lambda n: len(n) <= 63 and "." not in n), spec=admitted_specs)
def test_admitted_specs_with_a_label_sized_name_render_unless_a_known_reason(
    name: str, spec: dict[str, Any]
) -> None:
    """The only reasons an admitted spec of a name up to 63 characters is refused: the reserved
    selector label, a quantity the schema's pattern admits but Kubernetes cannot parse (a
    fractional exponent such as 1e1.5), what the admission rules do not allow, and an image of
    blanks only."""
    result = render_or_invalid(apptask(name, spec))
    if isinstance(result, InvalidSpec):
        reserved = desired.NAME_LABEL in (spec.get("labels") or {})
        bad_quantity = re.search(r"^spec\..* is not a quantity$", str(result), re.S)
        not_allowed = re.search(r"is not allowed \(admission\.[a-zA-Z]+: ", str(result))
        blank_image = not spec["image"].strip()  # admitted (minLength 1), no image to pull
        assert reserved or bad_quantity or not_allowed or blank_image, str(result)
        return
    [container] = result["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in container.get("env", [])] == [e["name"] for e in spec.get("env", [])]
    assert len(container.get("ports", [])) == len(spec.get("ports", []))
    assert all(p["protocol"] in desired.PROTOCOLS for p in container.get("ports", []))
    assert ("replicas" in result["spec"]) == ("replicas" in spec)



@STABLE
@given(spec=admitted_specs)
def test_admitted_workload_fields_are_rendered_as_the_spec_sets_them(spec: dict[str, Any]) -> None:
    """Without the restricted settings and admission rules, every workload field the schema
    admits is rendered as it is where the Deployment has it; an empty one is left out."""
    spec = {**spec, "image": "nginx", "labels": {}, "annotations": {}}
    spec.pop("securityContext", None)  # added capabilities: see test_admission.py
    try:
        body = desired.render(apptask("web", spec), PodTemplateConfig(restricted=False),
                              AdmissionConfig(allow_privileged=True, allow_run_as_root=True,
                                              allow_privilege_escalation=True))
    except InvalidSpec as exc:
        assert "is not a quantity" in str(exc), str(exc)
        return
    for name in WORKLOAD:
        value = spec.get(name)
        assert at(body, where(name)) == (None if value in (None, "", [], {}) else value), name


@STABLE
@given(spec=admitted_specs)
def test_a_rendered_body_read_back_as_it_was_sent_shows_no_drift(spec: dict[str, Any]) -> None:
    """The comparison of any rendered body (keyed lists of every kind, atomic lists and
    structs, pass-through affinity) with the same body as the live object and its paths as
    owned finds nothing to apply: a Deployment in sync is left alone. (Two ports of one
    containerPort and protocol: the server refuses the body, so it is never read back.)"""
    result = render_or_invalid(apptask("web", spec))
    ports = {(p["containerPort"], p.get("protocol", "TCP")) for p in spec.get("ports", [])}
    if isinstance(result, InvalidSpec) or len(ports) < len(spec.get("ports", [])):
        return
    assert not drift.compute(result, result, fieldset.body_paths(result))


@STABLE
@given(name=names, spec=st.one_of(wild_specs, json_values))
@example(name="web", spec={"image": "nginx", "env": 5})
@example(name="web", spec={"image": "nginx", "ports": 80})
@example(name="web", spec={"image": "nginx", "env": [{"name": "A"}, {"name": "A"}]})
@example(name="web", spec={"image": "nginx", "resources": {"requests": {"cpu": 1.5}}})
@example(name="web", spec={"image": "nginx", "resources": {"limits": {"memory": True}}})
@example(name="web", spec={"image": "nginx", "ports": [{"containerPort": 70000}]})
@example(name="web", spec={"image": "nginx", "replicas": 2**31})
@example(name="web", spec={"image": "  "})
@example(name="web", spec=None)
def test_any_json_spec_renders_or_is_invalid_never_crashes(name: str, spec: Any) -> None:
    result = render_or_invalid(apptask(name, spec))
    if isinstance(result, InvalidSpec):
        check_invalid(result)
    else:
        check_body(name, spec, result)


@STABLE
@given(name=st.text(max_size=300), spec=admitted_specs)
def test_any_name_renders_or_is_invalid(name: str, spec: dict[str, Any]) -> None:
    """Names the server would never admit (unicode, empty, 300 characters) are InvalidSpec
    too, not a crash: the renderer does not rely on the server's checks."""
    result = render_or_invalid(apptask(name, spec))
    if isinstance(result, InvalidSpec):
        check_invalid(result)
    else:
        assert len(name) <= 63
        check_body(name, spec, result)


@settings(STABLE, max_examples=5)
@given(values=st.lists(unicode_text, min_size=500, max_size=500))
def test_five_hundred_env_vars_render_in_order(values: list[str]) -> None:
    env = [{"name": f"VAR_{i}", "value": value} for i, value in enumerate(values)]
    body = desired.render(apptask("web", {"image": "nginx", "env": env}))
    [container] = body["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in container["env"]] == [e["name"] for e in env]
    assert [e.get("value", "") for e in container["env"]] == values


@pytest.mark.parametrize(("applied", "stored"), [
    ("1n", "1m"), ("0.001m", "1m"), ("1u", "1m"), ("1.0001", "1001m"), ("1e-999999999", "1m"),
    ("999Ei", "9223372036854775807"), ("1e999999999", "9223372036854775807"),
    (2**70, "9223372036854775807"), ("0", "0"), ("1500m", "1500m"), ("0.5Gi", "512Mi"),
])
def test_quantities_compare_as_the_server_stores_them(applied: str | int, stored: str) -> None:
    """kube-apiserver caps quantities at 2^63-1 and rounds resource values up to 1m (observed on
    v1.20.2): a spec asking for "1n" must not look drifted from the stored "1m", or every
    reconcile would re-apply it (found by tests/integration/test_bad_input.py)."""
    assert quantity.stored(applied) == quantity.stored(stored)
    assert quantity.stored(applied) is not None


@STABLE
@given(amount=quantities)
def test_any_admitted_quantity_compares_without_error(amount: str | int) -> None:
    value = quantity.stored(amount)
    assert value is None or value == quantity.stored(str(value))


@pytest.mark.parametrize(("text", "value"), [
    ("1E", 10**18), ("2Ei", 2 * 2**60), ("1e3", 1000), ("1E3", 1000), ("1e-3", Decimal("0.001"))])
def test_exa_suffixes_are_quantities_not_exponents(text: str, value: Decimal | int) -> None:
    assert quantity.parse(text) == value
    desired.render(apptask("web", {"image": "x", "resources": {"limits": {"memory": text}}}))


@STABLE
@given(name=names, spec=admitted_specs)
@example(name="web", spec={"image": "nginx", "env": [{"name": "SMILE", "value": "\U0001f600"}]})
@example(name="web", spec={"image": "nginx", "resources": {"requests": {"cpu": -2**63 - 1},
                                                          "limits": {"cpu": 2**64}}})
def test_apply_bodies_are_encoded_so_the_servers_yaml_parser_reads_them(
    name: str, spec: dict[str, Any]
) -> None:
    """kube-apiserver reads an apply patch with a YAML parser that refuses the surrogate-pair
    escapes json.dumps writes for characters beyond U+FFFF (observed: "yaml: found invalid
    Unicode character escape code", found by tests/integration/test_bad_input.py). The encoded
    body is JSON equal to the body, and YAML without a surrogate escape."""
    result = render_or_invalid(apptask(name, spec))
    if isinstance(result, InvalidSpec):
        return
    data = encode_body(result, APPLY_PATCH)  # orjson: integers of 64 bits at most
    assert json.loads(data) == result
    assert not re.search(rb"(?<!\\)(\\\\)*\\u[dD][89abAB]", data)
    assert yaml.safe_load(data.decode("utf-8")) == result
