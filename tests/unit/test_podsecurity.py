"""Unit tests for ssa_controller.envtest.podsecurity: the Pod Security Standard "restricted"
checks the tests run where kube-apiserver v1.20.2 has no PodSecurity admission."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from ssa_controller.envtest.podsecurity import restricted_violations

RESTRICTED: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "config", "configMap": {"name": "c"}}],
        "containers": [{
            "name": "app", "image": "x", "ports": [{"containerPort": 80}],
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
        }],
    },
}


def _spec(pod: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = pod["spec"]
    return spec


def _app(pod: dict[str, Any]) -> dict[str, Any]:
    app: dict[str, Any] = _spec(pod)["containers"][0]
    return app


def _app_context(pod: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = _app(pod)["securityContext"]
    return context


CASES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("host namespaces: hostNetwork=true", lambda p: _spec(p).update(hostNetwork=True)),
    ("host namespaces: hostPID=true", lambda p: _spec(p).update(hostPID=True)),
    ("hostPath volumes: root", lambda p: _spec(p)["volumes"].append(
        {"name": "root", "hostPath": {"path": "/"}})),
    ("privileged: containers[app]", lambda p: _app_context(p).update(privileged=True)),
    ("capabilities beyond baseline: containers[app] adds ['SYS_ADMIN']",
     lambda p: _app_context(p)["capabilities"].update(add=["SYS_ADMIN"])),
    ("hostPort: containers[app]", lambda p: _app(p)["ports"][0].update(hostPort=80)),
    ("AppArmor profile: container.apparmor.security.beta.kubernetes.io/app=unconfined",
     lambda p: p["metadata"].update(annotations={
         "container.apparmor.security.beta.kubernetes.io/app": "unconfined"})),
    ("sysctls: kernel.msgmax", lambda p: _spec(p)["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}])),
    ("SELinux options: containers[app]", lambda p: _app_context(p).update(
        seLinuxOptions={"type": "spc_t"})),
    ("procMount: containers[app]", lambda p: _app_context(p).update(procMount="Unmasked")),
    ("volume types: data is ['gcePersistentDisk']", lambda p: _spec(p)["volumes"].append(
        {"name": "data", "gcePersistentDisk": {"pdName": "d"}})),
    ("allowPrivilegeEscalation != false: containers[app]",
     lambda p: _app_context(p).pop("allowPrivilegeEscalation")),
    ("runAsNonRoot != true: containers[app]",
     lambda p: _spec(p)["securityContext"].pop("runAsNonRoot")),
    ("runAsNonRoot != true: containers[app]", lambda p: _app_context(p).update(
        runAsNonRoot=False)),
    ("runAsUser=0: containers[app]", lambda p: _app_context(p).update(runAsUser=0)),
    ("seccompProfile not RuntimeDefault or Localhost: containers[app]",
     lambda p: _spec(p)["securityContext"].pop("seccompProfile")),
    ("seccomp profile: containers[app] Unconfined", lambda p: _app_context(p).update(
        seccompProfile={"type": "Unconfined"})),
    ("capabilities: containers[app] does not drop ALL",
     lambda p: _app_context(p)["capabilities"].update(drop=["NET_RAW"])),
    ("capabilities: containers[app] adds ['CHOWN']",
     lambda p: _app_context(p)["capabilities"].update(add=["CHOWN"])),
    ("allowPrivilegeEscalation != false: initContainers[init]",
     lambda p: _spec(p).update(initContainers=[{"name": "init", "image": "x", "securityContext": {
         "capabilities": {"drop": ["ALL"]}}}])),
]


def test_a_restricted_pod_has_no_violation() -> None:
    assert restricted_violations(RESTRICTED) == []


@pytest.mark.parametrize(("violation", "change"), CASES, ids=[c[0] for c in CASES])
def test_each_restricted_rule_is_checked(violation: str,
                                         change: Callable[[dict[str, Any]], None]) -> None:
    pod = copy.deepcopy(RESTRICTED)
    change(pod)
    assert violation in restricted_violations(pod)
