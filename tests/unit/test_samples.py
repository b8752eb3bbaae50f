"""The samples of config/samples/ (what `run --local` applies and the README shows): each file
reads as --local reads it, every AppTask is what the CRD's schema keeps (no field it would
prune) and renders under config/controller.yaml's settings without InvalidSpec, into a pod the
Pod Security Standard "restricted" admits, and what an AppTask reads (Secrets, ConfigMaps, their
keys, named ports) is in its file. A sample --local cannot apply stops it before anything
starts, in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ssa_controller import cli, local
from ssa_controller.apptask import desired
from ssa_controller.envtest.podsecurity import restricted_violations
from ssa_controller.settings.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "crd.yaml"
CONFIG = load_config(ROOT / "config" / "controller.yaml")
SAMPLES = local.samples()
UID = "0b9c3f0e-7d1a-4c55-9d6e-2f1b8a0c4d21"


def apptasks(sample: local.Sample) -> list[dict[str, Any]]:
    return [obj for obj in sample.objects if obj["kind"] == "AppTask"]


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root["properties"]["spec"]  # type: ignore[no-any-return]


def pruned(value: Any, node: dict[str, Any], where: str) -> list[str]:
    """Where the API server's pruning would drop part of `value` under the structural schema
    `node`: a key neither its properties nor its additionalProperties describe."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties, extra = node.get("properties", {}), node.get("additionalProperties")
        found = []
        for key, item in value.items():
            described = properties.get(key, extra if isinstance(extra, dict) else None)
            found += ([f"{where}.{key}"] if described is None
                      else pruned(item, described, f"{where}.{key}"))
        return found
    if isinstance(value, list) and "items" in node:
        return [p for i, item in enumerate(value) for p in pruned(item, node["items"],
                                                                 f"{where}[{i}]")]
    return []


def rendered(task: dict[str, Any]) -> dict[str, Any]:
    """The Deployment body of a sample AppTask under config/controller.yaml's settings (what
    `run --config config/controller.yaml --local` renders); InvalidSpec fails the test."""
    task = {**task, "metadata": {**task["metadata"], "uid": UID}}
    return desired.render(task, CONFIG.pod_template, CONFIG.admission)


def test_the_samples_are_the_minimal_and_the_realistic_apptask() -> None:
    assert [(s.path.name, [o["metadata"]["name"] for o in apptasks(s)]) for s in SAMPLES] == [
        ("minimal.yaml", ["hello"]), ("realistic.yaml", ["web"])]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.path.name)
def test_each_apptask_of_a_sample_is_kept_whole_by_the_schema_and_renders(
        sample: local.Sample) -> None:
    for task in apptasks(sample):
        assert set(task) == {"apiVersion", "kind", "metadata", "spec"}
        assert pruned(task["spec"], spec_schema(), "spec") == []
        body = rendered(task)
        assert restricted_violations(body["spec"]["template"]) == []


def references(spec: dict[str, Any]) -> set[tuple[str, str, str | None]]:
    """(kind, name, key or None for the whole object) of what the spec reads."""
    found: set[tuple[str, str, str | None]] = set()
    for env in spec.get("env", []):
        source = env.get("valueFrom", {})
        for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if field in source:
                found.add((kind, source[field]["name"], source[field]["key"]))
    for env in spec.get("envFrom", []):
        for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if field in env:
                found.add((kind, env[field]["name"], None))
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"], None))
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"], None))
    return found


def keys(obj: dict[str, Any]) -> set[str]:
    return {*obj.get("data", {}), *obj.get("stringData", {}), *obj.get("binaryData", {})}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.path.name)
def test_what_an_apptask_of_a_sample_reads_is_in_its_file(sample: local.Sample) -> None:
    """So the sample starts as it is in a real cluster: a missing Secret or key, or a probe on
    a port the container does not name, keeps its pods from starting (the pod simulator of
    --local does not check them)."""
    held = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): keys(o)
            for o in sample.objects}
    for task in apptasks(sample):
        namespace, spec = task["metadata"]["namespace"], task["spec"]
        for kind, name, key in references(spec):
            assert (kind, namespace, name) in held, f"{kind} {namespace}/{name} not in the file"
            assert key is None or key in held[kind, namespace, name], f"no key {key} in {name}"
        ports = {p["name"] for p in spec.get("ports", []) if "name" in p}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            handler = spec.get(probe, {}).get("httpGet") or spec.get(probe, {}).get("tcpSocket")
            port = handler and handler["port"]
            assert not isinstance(port, str) or port in ports, f"{probe}: no port named {port}"


def test_the_realistic_sample_shows_what_a_real_workload_needs() -> None:
    [realistic] = [s for s in SAMPLES if s.path.name == "realistic.yaml"]
    [task] = apptasks(realistic)
    spec = task["spec"]
    assert {"readinessProbe", "livenessProbe", "volumes", "volumeMounts", "resources",
            "topologySpreadConstraints"} <= set(spec)
    assert ("Secret", "web-credentials", "api-token") in references(spec)
    assert {kind for kind, _, _ in references(spec)} == {"Secret", "ConfigMap"}


# --------------------------------------------------------------------------- bad samples


@pytest.mark.parametrize(("text", "problem"), [
    ("kind: [", "not valid YAML"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: demo}\n",
     "document 1: kind 'Service': --local applies only AppTask, ConfigMap, Secret"),
    ("kind: ConfigMap\nmetadata: {name: a, namespace: demo}\n---\n- a list\n",
     "document 2: kind None"),
    ("kind: [AppTask]\n", "document 1: kind ['AppTask']"),
    ("kind: AppTask\nmetadata: {name: a}\n",
     "document 1: metadata.name and metadata.namespace are required"),
])
def test_a_sample_that_cannot_be_applied_is_named_with_its_problem(
        tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(local.SampleError) as raised:
        local.samples(tmp_path)
    assert str(raised.value).startswith(f"{path}: {problem}"), raised.value


def test_a_bad_sample_stops_local_in_one_line_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text("kind: Service\nmetadata: {name: a, namespace: b}\n")
    monkeypatch.setattr(local, "SAMPLES", tmp_path)
    started = []
    monkeypatch.setattr(local, "cluster", lambda *args: started.append(args))
    assert cli.main(["run", "--local", "--once"]) == cli.EXIT_ERROR
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"ssa-controller: {tmp_path / 'bad.yaml'}: document 1: kind "
                           "'Service'"), line
    assert started == []
