"""The Pod Security Standards' "restricted" level as a pure function, for the tests.

kube-apiserver v1.20.2 has no PodSecurity admission (alpha in 1.22, beta in 1.23), so a
namespace labelled `pod-security.kubernetes.io/enforce: restricted` enforces nothing on it.
`restricted_violations` mirrors the checks that admission runs at that level
(k8s.io/pod-security-admission/policy: the baseline checks and the restricted ones, latest
version) on a pod or pod template, and names each violation; an empty list means the pod
would be admitted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_ANNOTATIONS = ("seccomp.security.alpha.kubernetes.io/pod",
                       "container.seccomp.security.alpha.kubernetes.io/")


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or ():
            yield f"{field}[{container.get('name')}]", container


def _baseline(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Iterator[str]:
    pod_context = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"host namespaces: {field}=true"
    for volume in spec.get("volumes") or ():
        if "hostPath" in volume:
            yield f"hostPath volumes: {volume.get('name')}"
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(APPARMOR_PREFIX) and value != "runtime/default" \
                and not str(value).startswith("localhost/"):
            yield f"AppArmor profile: {key}={value}"
        if key.startswith(SECCOMP_ANNOTATIONS) and value == "unconfined":
            yield f"seccomp profile: {key}={value}"
    for sysctl in pod_context.get("sysctls") or ():
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"sysctls: {sysctl.get('name')}"
    contexts = [("pod", pod_context)] + [
        (where, c.get("securityContext") or {}) for where, c in _containers(spec)]
    for where, context in contexts:
        options = context.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES or options.get("user") \
                or options.get("role"):
            yield f"SELinux options: {where}"
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            yield f"seccomp profile: {where} Unconfined"
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            yield f"hostProcess: {where}"
    for where, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            yield f"privileged: {where}"
        added = set((context.get("capabilities") or {}).get("add") or ()) - BASELINE_CAPABILITIES
        if added:
            yield f"capabilities beyond baseline: {where} adds {sorted(added)}"
        if any(port.get("hostPort") for port in container.get("ports") or ()):
            yield f"hostPort: {where}"
        if context.get("procMount", "Default") != "Default":
            yield f"procMount: {where}"


def _restricted(spec: Mapping[str, Any]) -> Iterator[str]:
    pod_context = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield f"volume types: {volume.get('name')} is {sorted(kinds)}"
    pod_non_root = pod_context.get("runAsNonRoot") is True
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_context.get("runAsUser") == 0:
        yield "runAsUser=0: pod"
    for where, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"allowPrivilegeEscalation != false: {where}"
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            yield f"runAsNonRoot != true: {where}"
        if context.get("runAsUser") == 0:
            yield f"runAsUser=0: {where}"
        seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"seccompProfile not RuntimeDefault or Localhost: {where}"
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or ()):
            yield f"capabilities: {where} does not drop ALL"
        added = set(capabilities.get("add") or ()) - RESTRICTED_CAPABILITIES
        if added:
            yield f"capabilities: {where} adds {sorted(added)}"


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """What keeps `pod` (a Pod, or a pod template: metadata and spec) from the "restricted"
    level; empty when it would be admitted."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    return [*_baseline(meta, spec), *_restricted(spec)]
