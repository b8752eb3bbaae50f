"""Unit tests for apptask.desired: the minimal apply body of an AppTask's Deployment."""

from __future__ import annotations

import re
from typing import Any

import pytest
from workload_fields import ENV_FROM_FIELD, SAMPLES, at, where

from ssa_controller.apptask import admission, desired, fields
from ssa_controller.apptask.desired import InvalidSpec
from ssa_controller.envtest.podsecurity import restricted_violations
from ssa_controller.settings.config import AdmissionConfig, PodTemplateConfig

UID = "0b9c3f0e-7d1a-4c55-9d6e-2f1b8a0c4d21"
IMAGE = {"image": "nginx:1.25"}
OWNER_REF = {"apiVersion": "example.com/v1", "kind": "AppTask", "name": "web", "uid": UID,
             "controller": True, "blockOwnerDeletion": True}
"""As controller-runtime's SetControllerReference makes it: a foreground deletion of the
AppTask waits for its Deployment."""
UNRESTRICTED = PodTemplateConfig(restricted=False)


def apptask(spec: dict[str, Any] | None = None, name: str = "web") -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": "demo", "uid": UID, "generation": 3,
                         "resourceVersion": "42"},
            "spec": IMAGE if spec is None else spec}


def container(body: dict[str, Any]) -> dict[str, Any]:
    [only] = body["spec"]["template"]["spec"]["containers"]
    return only


def render_with(**spec: Any) -> dict[str, Any]:
    return desired.render(apptask({**IMAGE, **spec}), UNRESTRICTED)


# --------------------------------------------------------------------------- render


def test_an_image_alone_renders_identity_owner_label_selector_and_container() -> None:
    assert desired.render(apptask(), UNRESTRICTED) == {
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


def test_a_shard_labels_what_it_renders() -> None:
    body = desired.render(apptask(), UNRESTRICTED, shard="shard-a")
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "ssa-controller",
                                          "apptasks.example.com/shard": "shard-a"}
    assert body["metadata"] == desired.child_metadata(apptask(), "shard-a")
    assert "apptasks.example.com/shard" not in str(body["spec"])  # not on the pods
    assert desired.render(apptask(), UNRESTRICTED)["metadata"] == desired.child_metadata(
        apptask())


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


def test_the_restricted_pod_security_settings_are_rendered_by_default() -> None:
    """Issue 26.2: the pod ran under the namespace's default service account with its token
    mounted and no securityContext, so a namespace enforcing "restricted" refused it."""
    body = desired.render(apptask())
    pod = body["spec"]["template"]["spec"]
    assert {k: v for k, v in pod.items() if k != "containers"} == {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}}
    assert container(body) == {
        "name": "app", "image": "nginx:1.25",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    assert restricted_violations(body["spec"]["template"]) == []


def test_without_restricted_no_security_setting_is_rendered() -> None:
    template = desired.render(apptask(), UNRESTRICTED)["spec"]["template"]
    assert template["spec"] == {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    assert "runAsNonRoot != true: containers[app]" in restricted_violations(template)


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


# --------------------------------------------------------------------------- workload fields


def test_every_workload_field_has_samples() -> None:
    assert set(SAMPLES) == {*fields.CONTAINER, *fields.POD, *fields.DEPLOYMENT}


ALLOWED = AdmissionConfig(allow_run_as_root=True)


@pytest.mark.parametrize("which", ["first", "second"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_workload_field_is_rendered_where_the_deployment_has_it(name: str,
                                                                     which: str) -> None:
    sample = SAMPLES[name]
    value = getattr(sample, which)
    body = desired.render(apptask({**IMAGE, **sample.context, name: value}), UNRESTRICTED)
    assert at(body, where(name)) == value
    without = desired.render(apptask({**IMAGE, **sample.context}), UNRESTRICTED)
    assert at(without, where(name)) is None, "an omitted field is not owned"


@pytest.mark.parametrize("name", sorted(n for n, s in SAMPLES.items()
                                        if isinstance(s.first, (str, list, dict))))
def test_an_empty_workload_field_is_left_out(name: str) -> None:
    """As the first fields: an empty string, list or map is no value (0 and false are)."""
    empty = type(SAMPLES[name].first)()
    body = desired.render(apptask({**IMAGE, name: empty}), UNRESTRICTED)
    assert at(body, where(name)) is None


def test_an_env_var_may_take_its_value_from_elsewhere() -> None:
    for env in ENV_FROM_FIELD[:2]:
        assert container(render_with(env=env))["env"] == env


def test_the_restricted_settings_lie_under_the_specs_security_context_fields() -> None:
    body = desired.render(apptask({
        **IMAGE, "securityContext": {"readOnlyRootFilesystem": True,
                                     "capabilities": {"add": ["NET_BIND_SERVICE"]}},
        "podSecurityContext": {"runAsUser": 101, "fsGroup": 101}}),
        rules=AdmissionConfig(allowed_capabilities=("NET_BIND_SERVICE",)))
    pod = body["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 101, "fsGroup": 101,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert container(body)["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert restricted_violations(body["spec"]["template"]) == []


def test_the_spec_may_override_a_restricted_setting_the_rules_allow() -> None:
    body = desired.render(apptask({**IMAGE, "securityContext": {"capabilities": {"drop": []}},
                                   "podSecurityContext": {"runAsNonRoot": False}}),
                          rules=AdmissionConfig(allow_run_as_root=True, allowed_capabilities=(
                              admission.RUNTIME_DEFAULT_CAPABILITIES)))
    assert body["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is False
    assert container(body)["securityContext"]["capabilities"] == {"drop": []}


def test_workload_fields_come_in_the_order_of_the_schema() -> None:
    spec = {**IMAGE, **{name: sample.first for name, sample in SAMPLES.items()},
            "volumes": SAMPLES["volumeMounts"].context["volumes"]}
    body = desired.render(apptask(spec), UNRESTRICTED, ALLOWED)
    assert body == desired.render(apptask(dict(reversed(spec.items()))), UNRESTRICTED, ALLOWED)
    assert [k for k in container(body) if k in fields.CONTAINER] == list(fields.CONTAINER)


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
    ({**IMAGE, "env": [{"name": "A", "valueFrom": {}}]}, "env[0].valueFrom"),
    ({**IMAGE, "env": [{"name": "A", "valueFrom": {"fieldRef": {}}}]},
     "env[0].valueFrom.fieldRef.fieldPath"),
    ({**IMAGE, "volumes": [{"name": "v"}]}, "volumes[0]"),
    ({**IMAGE, "volumes": [{"name": "v", "hostPath": {"path": "/"}}]}, "volumes[0]"),
    ({**IMAGE, "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]},
     "volumes[1]"),
    ({**IMAGE, "volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]},
     "volumes[0]"),
    ({**IMAGE, "volumes": [{"name": "v", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}}]}}]}, "volumes[0].projected.sources[0]"),
    ({**IMAGE, "volumeMounts": [{"name": "v", "mountPath": "/a"},
                                {"name": "w", "mountPath": "/a"}]}, "volumeMounts[1]"),
    ({**IMAGE, "livenessProbe": {"periodSeconds": 5}}, "livenessProbe"),
    ({**IMAGE, "livenessProbe": {"exec": {"command": ["true"]}, "timeoutSeconds": 0}},
     "livenessProbe.timeoutSeconds"),
    ({**IMAGE, "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}},
     "livenessProbe.httpGet"),
    ({**IMAGE, "readinessProbe": {"tcpSocket": {"port": 70000}}},
     "readinessProbe.tcpSocket.port"),
    ({**IMAGE, "hostNetwork": True}, "hostNetwork"),
    ({**IMAGE, "hostPID": True}, "hostPID"),
    ({**IMAGE, "hostIPC": True}, "hostIPC"),
    ({**IMAGE, "imagePullPolicy": "Sometimes"}, "imagePullPolicy"),
    ({**IMAGE, "tolerations": [{"key": "a", "operator": "Maybe"}]}, "tolerations[0].operator"),
    ({**IMAGE, "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z"}]},
     "topologySpreadConstraints[0].whenUnsatisfiable"),
    ({**IMAGE, "affinity": {"nodeAffinity": [1]}}, "affinity.nodeAffinity"),
    ({**IMAGE, "affinity": {"hostAffinity": {}}}, "affinity"),
    ({**IMAGE, "strategy": {"type": "BlueGreen"}}, "strategy.type"),
    ({**IMAGE, "minReadySeconds": -1}, "minReadySeconds"),
    ({**IMAGE, "nodeSelector": {"disk": 1}}, "nodeSelector.disk"),
    ({**IMAGE, "terminationGracePeriodSeconds": 2**63}, "terminationGracePeriodSeconds"),
])
def test_an_invalid_spec_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        desired.render(apptask(spec))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"spec.{field}: ")


@pytest.mark.parametrize(("key", "why"), [
    ("apptasks.example.com/name", "is reserved for the controller"),
    ("apptasks.example.com/other", "is reserved for the controller"),
    ("app.kubernetes.io/managed-by", "is reserved for the controller"),
    ("kubernetes.io/hostname", "is reserved for Kubernetes (kubernetes.io/, k8s.io/)"),
    ("node-role.kubernetes.io/control-plane", "is reserved for Kubernetes"),
    ("container.apparmor.security.beta.kubernetes.io/app", "is reserved for Kubernetes"),
    ("pod-security.kubernetes.io/enforce", "is reserved for Kubernetes"),
    ("k8s.io/x", "is reserved for Kubernetes"),
    ("sig.k8s.io/x", "is reserved for Kubernetes"),
    ("app.kubernetes.io/name", "is reserved (podTemplate.reservedKeys: app.kubernetes.io/)"),
    ("sidecar.istio.io/inject", "is reserved (podTemplate.reservedKeys: istio.io/)"),
    ("vault.hashicorp.com/agent-inject", "is reserved (podTemplate.reservedKeys: hashicorp.com/)"),
    ("linkerd.io/inject", "is reserved (podTemplate.reservedKeys: linkerd.io/)"),
    ("azure.workload.identity/use", "is reserved"),
])
@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_reserved_label_and_annotation_keys_are_invalid_naming_the_key(
        field: str, key: str, why: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        desired.render(apptask({**IMAGE, field: {"tier": "web", key: "true"}}))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"spec.{field}: key {key!r} {why}")


@pytest.mark.parametrize("key", [
    "tier", "example.com/team", "mykubernetes.io/x", "kubernetes.io.example.com/x",
    "istio.io.example.com/x", "prometheus.io/scrape"])
def test_other_keys_are_rendered(key: str) -> None:
    body = desired.render(apptask({**IMAGE, "labels": {key: "v"}, "annotations": {key: "v"}}))
    assert body["spec"]["template"]["metadata"]["annotations"] == {key: "v"}


def test_reserved_keys_are_configurable_but_the_kubernetes_and_own_ones_stay() -> None:
    template = PodTemplateConfig(reserved_keys=("example.com/", "tier"))
    labels = {"app.kubernetes.io/name": "web", "sidecar.istio.io/inject": "true"}
    assert desired.render(apptask({**IMAGE, "labels": labels}), template)
    for key, why in [("tier", "is reserved (podTemplate.reservedKeys: tier)"),
                     ("team.example.com/x", "is reserved (podTemplate.reservedKeys: example.com/)"),
                     ("app.kubernetes.io/managed-by", "is reserved for the controller"),
                     ("topology.kubernetes.io/zone", "is reserved for Kubernetes")]:
        with pytest.raises(InvalidSpec, match=f"key '{key}' {re.escape(why)}"):
            desired.render(apptask({**IMAGE, "labels": {key: "v"}}), template)


def test_with_allowed_keys_only_those_are_rendered() -> None:
    template = PodTemplateConfig(allowed_keys=("team.example.com/", "tier", "kubernetes.io/"))
    spec = {**IMAGE, "labels": {"tier": "web", "ops.team.example.com/owner": "a"},
            "annotations": {"team.example.com/note": "x"}}
    assert desired.render(apptask(spec), template)
    with pytest.raises(InvalidSpec) as raised:
        desired.render(apptask({**IMAGE, "labels": {"app": "web", "tier": "web"}}), template)
    assert str(raised.value) == ("spec.labels: key 'app' is not allowed (podTemplate.allowedKeys: "
                                 "team.example.com/, tier, kubernetes.io/)")
    with pytest.raises(InvalidSpec, match="is reserved for Kubernetes"):  # reserved wins
        desired.render(apptask({**IMAGE, "labels": {"kubernetes.io/x": "v"}}), template)


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
