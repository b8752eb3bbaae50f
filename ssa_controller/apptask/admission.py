"""What an AppTask may ask for: the `admission` rules, applied to what would be rendered. Pure.

Whoever may create an AppTask gets pods made by the controller's ServiceAccount, so the API
grows exactly where that turns into privilege, and these rules decide how far: privileged
containers, privilege escalation, running as root, added capabilities, another ServiceAccount,
an exposed Service. A spec asking for more is InvalidSpec naming the spec's field and the rule,
before anything is applied. (Host namespaces, hostPath and a probe's host have no field in the
schema at all: fields.py.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..settings.config import AdmissionConfig
from .shapes import InvalidSpec

DEFAULT = AdmissionConfig()


def _capability(name: str) -> str:
    """A capability as the container runtime reads it: case and the CAP_ prefix aside."""
    return name.upper().removeprefix("CAP_")


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values) or "none"


def _as_root(context: Mapping[str, Any], field: str) -> Iterator[tuple[str, str]]:
    """(field, value) of what in a securityContext asks to run as root."""
    if context.get("runAsNonRoot") is False:
        yield f"{field}.runAsNonRoot", "false"
    if context.get("runAsUser") == 0:
        yield f"{field}.runAsUser", "0"


def check_pod(pod: Mapping[str, Any], rules: AdmissionConfig = DEFAULT) -> None:
    """Raise InvalidSpec for the first thing the rendered pod spec `pod` (of the one container,
    the restricted defaults merged in) asks for that the rules do not allow."""
    [container] = pod["containers"]
    context = container.get("securityContext") or {}
    if context.get("privileged") is True and not rules.allow_privileged:
        raise InvalidSpec("securityContext.privileged",
                          "true is not allowed (admission.allowPrivileged: false)")
    if context.get("allowPrivilegeEscalation") is True and not rules.allow_privilege_escalation:
        raise InvalidSpec("securityContext.allowPrivilegeEscalation",
                          "true is not allowed (admission.allowPrivilegeEscalation: false)")
    allowed = {_capability(c) for c in rules.allowed_capabilities}
    for name in (context.get("capabilities") or {}).get("add") or ():
        if _capability(name) not in allowed:
            raise InvalidSpec("securityContext.capabilities.add",
                              f"{name!r} is not allowed (admission.allowedCapabilities: "
                              f"{_listed(rules.allowed_capabilities)})")
    if not rules.allow_run_as_root:
        for field, value in (*_as_root(context, "securityContext"),
                             *_as_root(pod.get("securityContext") or {}, "podSecurityContext")):
            raise InvalidSpec(field, f"{value} is not allowed (admission.allowRunAsRoot: false)")
    account = pod.get("serviceAccountName")
    names = rules.service_account_names
    if account is not None and names and account not in names:
        raise InvalidSpec("serviceAccountName", f"{account!r} is not allowed "
                          f"(admission.serviceAccountNames: {_listed(names)})")


def check_service(service: Mapping[str, Any], rules: AdmissionConfig = DEFAULT) -> None:
    """Raise InvalidSpec when the checked spec.service `service` asks for a type the rules do
    not allow (an omitted type is the server's default, ClusterIP)."""
    kind = service.get("type", "ClusterIP")
    if kind not in rules.service_types:
        raise InvalidSpec("service.type", f"{kind} is not allowed (admission.serviceTypes: "
                          f"{_listed(rules.service_types)})")
