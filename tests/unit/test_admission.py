"""Unit tests for apptask.admission: what an AppTask may ask for, as the `admission` settings
say; each refusal is InvalidSpec naming the spec's field and the rule, raised by render()
before anything is applied."""

from __future__ import annotations

from typing import Any

import pytest

from ssa_controller.apptask import admission, desired
from ssa_controller.apptask.desired import InvalidSpec
from ssa_controller.settings.config import AdmissionConfig, PodTemplateConfig, parse_config

UID = "0b9c3f0e-7d1a-4c55-9d6e-2f1b8a0c4d21"


def apptask(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "demo", "uid": UID},
            "spec": {"image": "nginx", **spec}}


def refusal(spec: dict[str, Any], rules: AdmissionConfig = admission.DEFAULT,
            restricted: bool = True) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as raised:
        desired.render(apptask(**spec), PodTemplateConfig(restricted=restricted), rules)
    return raised.value


REFUSED = [
    ({"securityContext": {"privileged": True}},
     "spec.securityContext.privileged: true is not allowed (admission.allowPrivileged: false)",
     AdmissionConfig(allow_privileged=True)),
    ({"securityContext": {"allowPrivilegeEscalation": True}},
     "spec.securityContext.allowPrivilegeEscalation: true is not allowed "
     "(admission.allowPrivilegeEscalation: false)",
     AdmissionConfig(allow_privilege_escalation=True)),
    ({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}}},
     "spec.securityContext.capabilities.add: 'NET_BIND_SERVICE' is not allowed "
     "(admission.allowedCapabilities: none)",
     AdmissionConfig(allowed_capabilities=("NET_BIND_SERVICE", "CAP_SYS_ADMIN"))),
    ({"securityContext": {"runAsNonRoot": False}},
     "spec.securityContext.runAsNonRoot: false is not allowed (admission.allowRunAsRoot: false)",
     AdmissionConfig(allow_run_as_root=True)),
    ({"securityContext": {"runAsUser": 0}},
     "spec.securityContext.runAsUser: 0 is not allowed (admission.allowRunAsRoot: false)",
     AdmissionConfig(allow_run_as_root=True)),
    ({"podSecurityContext": {"runAsNonRoot": False}},
     "spec.podSecurityContext.runAsNonRoot: false is not allowed "
     "(admission.allowRunAsRoot: false)",
     AdmissionConfig(allow_run_as_root=True)),
    ({"podSecurityContext": {"runAsUser": 0}},
     "spec.podSecurityContext.runAsUser: 0 is not allowed (admission.allowRunAsRoot: false)",
     AdmissionConfig(allow_run_as_root=True)),
    ({"serviceAccountName": "admin"},
     "spec.serviceAccountName: 'admin' is not allowed (admission.serviceAccountNames: "
     "default, web)",
     AdmissionConfig(service_account_names=("default", "web", "admin"))),
]


@pytest.mark.parametrize(("spec", "message", "allowing"), REFUSED)
@pytest.mark.parametrize("restricted", [True, False])
def test_each_rule_refuses_by_default_and_its_setting_allows(
        spec: dict[str, Any], message: str, allowing: AdmissionConfig, restricted: bool) -> None:
    rules = AdmissionConfig(service_account_names=("default", "web"))
    refused = refusal(spec, rules, restricted)
    assert str(refused) == message
    assert refused.field == message.split(":")[0].removeprefix("spec.")
    desired.render(apptask(**spec), PodTemplateConfig(restricted=restricted), allowing)


def test_the_restricted_defaults_pass_every_rule() -> None:
    desired.render(apptask())
    desired.render(apptask(securityContext={"runAsUser": 101, "runAsNonRoot": True},
                           podSecurityContext={"runAsUser": 101, "runAsGroup": 0},
                           serviceAccountName="anything"))


def test_capabilities_compare_without_case_or_the_cap_prefix() -> None:
    rules = AdmissionConfig(allowed_capabilities=("CAP_NET_BIND_SERVICE",))
    desired.render(apptask(securityContext={"capabilities": {"add": ["net_bind_service"]}}),
                   rules=rules)
    assert "is not allowed" in str(refusal(
        {"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "NET_RAW"]}}}, rules))


def test_a_service_type_the_rules_leave_out_is_refused() -> None:
    rules = AdmissionConfig(service_types=("ClusterIP",))
    with pytest.raises(InvalidSpec) as raised:
        admission.check_service({"type": "LoadBalancer", "ports": []}, rules)
    assert str(raised.value) == ("spec.service.type: LoadBalancer is not allowed "
                                 "(admission.serviceTypes: ClusterIP)")
    admission.check_service({"ports": []}, rules)  # the server's default: ClusterIP


def test_the_defaults_are_safe_and_the_yaml_keys_camel_case() -> None:
    rules = parse_config({}).admission
    assert not (rules.allow_privileged or rules.allow_privilege_escalation
                or rules.allow_run_as_root or rules.allowed_capabilities)
    assert rules.service_account_names == ()
    configured = parse_config({"admission": {
        "allowPrivileged": True, "allowPrivilegeEscalation": True, "allowRunAsRoot": True,
        "allowedCapabilities": ["NET_ADMIN"], "serviceAccountNames": ["web"],
        "serviceTypes": ["ClusterIP"]}}).admission
    assert configured == AdmissionConfig(
        allow_privileged=True, allow_privilege_escalation=True, allow_run_as_root=True,
        allowed_capabilities=("NET_ADMIN",), service_account_names=("web",),
        service_types=("ClusterIP",))
