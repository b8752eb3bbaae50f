"""The translation of manifests/deployment.yaml into `podman run` arguments (pod.py), without
podman: what the manifest asks for becomes the runtime's flags, and what has no translation is
refused by name. Not marked: part of the default run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pod import (
    SERVICE_ACCOUNT_MOUNT,
    PodHost,
    Untranslatable,
    file_volumes,
    http_probe,
    run_args,
    service_account,
)

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "deployment.yaml"
HOST = PodHost("pod-1", "ns", "127.0.0.1", 6443, Path("/sa"),
               {"config": Path("/cm"), "metrics-cert": Path("/certs")})


def deployment() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return found


def spec(deployment: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return found


def flags(args: list[str], name: str) -> list[str]:
    """The values given to option `name`."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]


def test_the_manifest_translates_completely() -> None:
    args = run_args(deployment(), HOST, "img")
    assert args[args.index("img"):] == ["img", "run", "--config",
                                        "/etc/ssa-controller/controller.yaml"]
    assert "--entrypoint" not in args  # the manifest gives args only: the image's ENTRYPOINT
    assert flags(args, "--user") == ["65532:65532"]
    assert "--read-only" in args and "--read-only-tmpfs=false" in args
    assert flags(args, "--cap-drop") == ["ALL"] and not flags(args, "--cap-add")
    assert flags(args, "--security-opt") == ["no-new-privileges"]
    assert flags(args, "--env") == [
        "POD_NAME=pod-1", "POD_NAMESPACE=ns", "MALLOC_ARENA_MAX=2",
        "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=6443"]
    assert flags(args, "--volume") == ["/cm:/etc/ssa-controller:ro",
                                       "/certs:/var/run/secrets/metrics-cert:ro",
                                       f"/sa:{SERVICE_ACCOUNT_MOUNT}:ro"]
    assert flags(args, "--tmpfs") == ["/tmp"]
    assert flags(args, "--memory") == [str(256 * 2**20)] and not flags(args, "--cpus")
    assert flags(args, "--stop-timeout") == ["40"]
    assert flags(args, "--network") == ["host"]
    assert flags(args, "--name") == flags(args, "--hostname") == ["pod-1"]


def test_what_the_tests_read_from_the_manifest() -> None:
    assert service_account(deployment()) == "ssa-controller"
    assert file_volumes(deployment()) == {
        "config": ("ConfigMap", "ssa-controller-config"),
        "metrics-cert": ("Secret", "ssa-controller-metrics-cert")}
    assert http_probe(deployment(), "readinessProbe") == (8081, "/readyz")
    assert http_probe(deployment(), "livenessProbe") == (8081, "/healthz")


def test_a_named_probe_port_is_the_container_port_of_that_name() -> None:
    changed = deployment()
    spec(changed)["containers"][0]["livenessProbe"]["httpGet"]["port"] = "health"
    assert http_probe(changed, "livenessProbe") == (8081, "/healthz")


def test_command_replaces_the_entrypoint_and_settings_combine_as_in_kubernetes() -> None:
    changed = deployment()
    pod, main = spec(changed), spec(changed)["containers"][0]
    main["command"] = ["python", "-m", "ssa_controller"]
    main["securityContext"]["runAsUser"] = 1000  # the container's setting wins over the pod's
    main["securityContext"]["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    main["resources"]["limits"]["cpu"] = "500m"
    pod["automountServiceAccountToken"] = False
    args = run_args(changed, HOST, "img")
    assert json.loads(flags(args, "--entrypoint")[0]) == ["python", "-m", "ssa_controller"]
    assert flags(args, "--user") == ["1000:65532"]
    assert flags(args, "--cap-add") == ["NET_BIND_SERVICE"]
    assert flags(args, "--cpus") == ["0.5"]
    assert not [v for v in flags(args, "--volume") if SERVICE_ACCOUNT_MOUNT in v]
    assert service_account(changed) is None


def change(path: str, value: Any) -> dict[str, Any]:
    """The manifest with the field at `path` (dots; `containers.0` is the container) set."""
    changed = deployment()
    *parents, last = path.split(".")
    node: Any = spec(changed)
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[last] = copy.deepcopy(value)
    return changed


@pytest.mark.parametrize(("path", "value", "named"), [
    ("hostNetwork", True, "hostNetwork"),
    ("initContainers", [{"name": "init"}], "initContainers"),
    ("containers.0.startupProbe", {"httpGet": {"port": 8081}}, "startupProbe"),
    ("containers.0.securityContext.runAsUser", 0, "runAsNonRoot"),
    ("containers.0.securityContext.procMount", "Unmasked", "procMount"),
    ("containers.0.securityContext.seccompProfile", {"type": "Localhost"}, "Localhost"),
    ("containers.0.env", [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
     "env X"),
    ("containers.0.env", [{"name": "X", "value": "$(POD_NAME)"}], "expansion"),
    ("containers.0.volumeMounts", [{"name": "config", "mountPath": "/c", "subPath": "a"}],
     "subPath"),
    ("volumes", [{"name": "config", "hostPath": {"path": "/etc"}},
                 {"name": "tmp", "emptyDir": {}}], "only configMap, secret and emptyDir"),
    ("volumes", [{"name": "config", "secret": {"secretName": "s", "optional": True}},
                 {"name": "tmp", "emptyDir": {}}], "optional"),
    ("volumes", [{"name": "config", "configMap": {"name": "ssa-controller-config"}},
                 {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}], "sizeLimit"),
    ("containers.0.resources.limits.ephemeral-storage", "1Gi", "ephemeral-storage"),
])
def test_what_has_no_translation_is_refused_by_name(path: str, value: Any, named: str) -> None:
    with pytest.raises(Untranslatable, match=named):
        run_args(change(path, value), HOST, "img")


def test_two_containers_are_refused() -> None:
    changed = deployment()
    spec(changed)["containers"].append({"name": "sidecar", "image": "busybox"})
    with pytest.raises(Untranslatable, match="2 containers"):
        run_args(changed, HOST, "img")
