"""The controller's Deployment (manifests/deployment.yaml) as `podman run` arguments: what the
kubelet makes of its pod template, translated to a container runtime on one host.

Pure: given the manifest and where the pod's files lie on the host, it gives the arguments.
Whatever the pod template asks for that has no translation here raises `Untranslatable` naming
the field, so the image tests fail when the manifest and the way they run the image drift apart
instead of running something else than the Deployment would.

Translations: the security contexts (pod, then container) become --user, --read-only,
--cap-drop/--cap-add, no-new-privileges and the seccomp profile; env values and the downward
API's pod name and namespace become --env; a ConfigMap or Secret volume a read-only bind mount of
a host folder holding its keys as files, an emptyDir a tmpfs; the service-account token and CA a
read-only bind mount at the standard path, with KUBERNETES_SERVICE_HOST/_PORT; limits
--memory/--cpus; terminationGracePeriodSeconds --stop-timeout; command and args the entrypoint
and arguments.
Requests and probes have no runtime counterpart (the tests query the probes' endpoints).
The pod shares the host's network (`--network host`): the control plane is on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssa_controller.apptask import quantity

SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_GRACE_SECONDS = 30
"""terminationGracePeriodSeconds when the pod spec does not set it."""

POD_FIELDS = {"serviceAccountName", "automountServiceAccountToken",
              "terminationGracePeriodSeconds", "securityContext", "containers", "volumes"}
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports",
                    "livenessProbe", "readinessProbe", "resources", "securityContext",
                    "volumeMounts"}
POD_SECURITY_FIELDS = {"runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"}
CONTAINER_SECURITY_FIELDS = POD_SECURITY_FIELDS | {
    "readOnlyRootFilesystem", "allowPrivilegeEscalation", "capabilities", "privileged"}
FIELD_REFS = {"metadata.name", "metadata.namespace"}


class Untranslatable(ValueError):
    """The pod template asks for something these translations do not cover."""


@dataclass(frozen=True)
class PodHost:
    """What the kubelet provides for one pod of the Deployment, on this host."""

    name: str
    """The pod's name: the container's name and hostname, the downward API's metadata.name."""
    namespace: str
    api_host: str
    api_port: int
    service_account_dir: Path
    """Holds `token`, `ca.crt` and `namespace`, as the kubelet projects them."""
    volume_dirs: Mapping[str, Path]
    """By volume name: a folder holding the ConfigMap's or Secret's keys as files."""


def pod_spec(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    spec: Mapping[str, Any] = deployment["spec"]["template"]["spec"]
    _known(spec, POD_FIELDS, "spec.template.spec")
    return spec


def container(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod's one container."""
    containers = pod_spec(deployment)["containers"]
    if len(containers) != 1:
        raise Untranslatable(f"{len(containers)} containers: the tests run exactly one")
    found: Mapping[str, Any] = containers[0]
    _known(found, CONTAINER_FIELDS, f"container {found.get('name')!r}")
    return found


def service_account(deployment: Mapping[str, Any]) -> str | None:
    """The ServiceAccount whose token the pod mounts, or None if it mounts none."""
    spec = pod_spec(deployment)
    if not spec.get("automountServiceAccountToken", True):
        return None
    return str(spec.get("serviceAccountName") or "default")


FILE_VOLUMES = {"configMap": ("ConfigMap", "name"), "secret": ("Secret", "secretName")}
"""The volume sources whose keys the kubelet writes as files: (kind, the field naming it)."""


def _file_volume(volume: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, object name) of a ConfigMap or Secret volume, None for another volume."""
    for source, (kind, field) in FILE_VOLUMES.items():
        if source in volume:
            _known(volume[source], {field}, f"volume {volume['name']!r} {source}")
            return kind, str(volume[source][field])
    return None


def file_volumes(deployment: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The ConfigMap and Secret volumes: (kind, object name), by volume name."""
    return {volume["name"]: found for volume in pod_spec(deployment).get("volumes", [])
            if (found := _file_volume(volume)) is not None}


def http_probe(deployment: Mapping[str, Any], kind: str) -> tuple[int, str]:
    """(port, path) of the container's `kind` probe ("readinessProbe", "livenessProbe")."""
    probe = container(deployment)[kind]
    if set(probe.get("httpGet", {})) - {"path", "port"}:
        raise Untranslatable(f"{kind}: only an httpGet of a path on a port is queried")
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        port = next((p["containerPort"] for p in container(deployment).get("ports", [])
                     if p.get("name") == port), None)
        if port is None:
            raise Untranslatable(f"{kind}: no container port named {probe['httpGet']['port']!r}")
    return int(port), str(probe["httpGet"].get("path", "/"))


def run_args(deployment: Mapping[str, Any], host: PodHost, image: str) -> list[str]:
    """The `podman run` arguments (after `run`) that start the pod's container from `image`."""
    spec, main = pod_spec(deployment), container(deployment)
    grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    args = ["--name", host.name, "--hostname", host.name, "--network", "host",
            # only what the pod mounts is writable: no tmpfs of podman's own on /tmp, /run...
            "--read-only-tmpfs=false", "--stop-timeout", str(grace),
            *_security(spec.get("securityContext", {}), main.get("securityContext", {})),
            *_environment(main.get("env", []), host),
            "--env", f"KUBERNETES_SERVICE_HOST={host.api_host}",
            "--env", f"KUBERNETES_SERVICE_PORT={host.api_port}",
            *_volumes(main.get("volumeMounts", []), spec.get("volumes", []), host),
            *_limits(main.get("resources", {}))]
    if service_account(deployment) is not None:
        args += ["--volume", f"{host.service_account_dir}:{SERVICE_ACCOUNT_MOUNT}:ro"]
    if "command" in main:
        args += ["--entrypoint", json.dumps(main["command"])]
    return [*args, image, *main.get("args", [])]


def _known(fields: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise Untranslatable(f"{where}: no translation for {', '.join(unknown)}")


def _security(pod: Mapping[str, Any], main: Mapping[str, Any]) -> list[str]:
    _known(pod, POD_SECURITY_FIELDS, "pod securityContext")
    _known(main, CONTAINER_SECURITY_FIELDS, "container securityContext")
    context = {**pod, **main}  # the container's settings win, as in Kubernetes
    args = []
    user, group = context.get("runAsUser"), context.get("runAsGroup")
    if context.get("runAsNonRoot") and not user:
        raise Untranslatable("runAsNonRoot needs a non-zero runAsUser here (the kubelet would "
                             "check the image's user)")
    if group is not None and user is None:
        raise Untranslatable("runAsGroup without runAsUser")
    if user is not None:
        args += ["--user", str(user) if group is None else f"{user}:{group}"]
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if context.get("privileged"):
        args.append("--privileged")
    capabilities = context.get("capabilities", {})
    _known(capabilities, {"add", "drop"}, "capabilities")
    for name in capabilities.get("drop", []):
        args += ["--cap-drop", name]
    for name in capabilities.get("add", []):
        args += ["--cap-add", name]
    seccomp = context.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # podman's default profile is the runtime's default
        raise Untranslatable(f"seccompProfile {seccomp}")
    return args


def _environment(env: Iterable[Mapping[str, Any]], host: PodHost) -> list[str]:
    pod_fields = {"metadata.name": host.name, "metadata.namespace": host.namespace}
    args = []
    for variable in env:
        if "value" in variable:
            value = str(variable["value"])
            if "$(" in value:
                raise Untranslatable(f"env {variable['name']}: $(VAR) expansion")
        else:
            field = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field not in pod_fields:
                raise Untranslatable(f"env {variable['name']}: valueFrom {variable['valueFrom']}")
            value = pod_fields[field]
        args += ["--env", f"{variable['name']}={value}"]
    return args


def _volumes(mounts: Iterable[Mapping[str, Any]], volumes: Iterable[Mapping[str, Any]],
             host: PodHost) -> list[str]:
    by_name = {volume["name"]: volume for volume in volumes}
    args = []
    for mount in mounts:
        _known(mount, {"name", "mountPath", "readOnly"}, f"volumeMount {mount['name']!r}")
        volume = by_name[mount["name"]]
        path = mount["mountPath"]
        if _file_volume(volume) is not None:  # read-only, whatever readOnly says
            args += ["--volume", f"{host.volume_dirs[mount['name']]}:{path}:ro"]
        elif "emptyDir" in volume:
            _known(volume["emptyDir"], {"medium"}, f"volume {mount['name']!r} emptyDir")
            args += ["--tmpfs", path]
        else:
            raise Untranslatable(f"volume {mount['name']!r}: only configMap, secret and "
                                 "emptyDir")
    return args


def _limits(resources: Mapping[str, Any]) -> list[str]:
    limits = resources.get("limits", {})
    _known(limits, {"memory", "cpu"}, "resources.limits")
    args = []
    if "memory" in limits:
        args += ["--memory", str(int(quantity_value(limits["memory"])))]
    if "cpu" in limits:
        args += ["--cpus", str(quantity_value(limits["cpu"]))]
    return args


def quantity_value(value: str | int) -> float:
    """A Kubernetes quantity's value ("256Mi": 268435456.0)."""
    parsed = quantity.parse(value)
    if parsed is None:
        raise Untranslatable(f"quantity {value!r}")
    return float(parsed)
