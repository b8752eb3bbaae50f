"""A local cluster for `ssa-controller run --local`: the envtest control plane (etcd,
kube-apiserver, kube-controller-manager), the pod simulator, the CRD, the leader-election
namespace and the samples (config/samples/)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from . import crds
from .client.kube import Kube
from .client.resources import APPTASKS, Resource
from .client.wire import ApiError
from .envtest import assets
from .envtest.controlplane import ControlPlane
from .envtest.podsim import PodSimulator

log = logging.getLogger(__name__)
SAMPLES = Path(__file__).resolve().parent.parent / "config" / "samples"
SAMPLE_MANAGER = "kubectl"
"""The samples are applied as `kubectl apply --server-side -f config/samples/` applies them
(kubectl's field manager), so that doing so later, changed, takes them over without conflict."""
SAMPLE_KINDS = {"AppTask": APPTASKS, "ConfigMap": Resource("v1", "configmaps"),
                "Secret": Resource("v1", "secrets")}
"""What a sample may hold: AppTasks and the objects they read."""


class SampleError(ValueError):
    """A sample file --local cannot apply; the message names the file and the problem."""


class Sample(NamedTuple):
    """A sample file and its objects, in the file's order."""

    path: Path
    objects: list[dict[str, Any]]


def read_sample(path: Path) -> Sample:
    """The objects of a sample file; SampleError when it is not YAML, or holds an object of
    another kind or without a name and a namespace."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise SampleError(f"{path}: not valid YAML: {exc}") from None
    for number, obj in enumerate(documents, 1):
        kind = obj.get("kind") if isinstance(obj, Mapping) else None
        if not isinstance(kind, str) or kind not in SAMPLE_KINDS:
            raise SampleError(f"{path}: document {number}: kind {kind!r}: --local applies "
                              f"only {', '.join(SAMPLE_KINDS)}")
        meta = obj.get("metadata")
        if not (isinstance(meta, Mapping) and meta.get("name") and meta.get("namespace")):
            raise SampleError(f"{path}: document {number}: metadata.name and "
                              "metadata.namespace are required")
    return Sample(path, documents)


def samples(folder: Path | None = None) -> list[Sample]:
    """The YAML files of `folder` (config/samples/), read, in the order `kubectl apply -f
    FOLDER` applies them (by name); SampleError for the first that cannot be applied."""
    return [read_sample(path) for path in sorted((folder or SAMPLES).glob("*.yaml"))]


def _ensure_namespace(kube: Kube, name: str) -> None:
    try:
        kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    except ApiError as exc:
        if exc.status != 409:
            raise


def apply_sample(kube: Kube, objects: Sequence[Mapping[str, Any]]) -> None:
    """Create or update a sample's objects (and their namespaces) in order, as kubectl's
    server-side apply would."""
    for namespace in dict.fromkeys(obj["metadata"]["namespace"] for obj in objects):
        _ensure_namespace(kube, namespace)
    for obj in objects:
        meta = obj["metadata"]
        kube.apply(SAMPLE_KINDS[obj["kind"]].path(meta["namespace"], meta["name"]), dict(obj),
                   field_manager=SAMPLE_MANAGER, force=True)


def _started(plane: ControlPlane, simulator: PodSimulator) -> str:
    """What runs, with the process ids: `etcd http://... (pid 12), kube-apiserver ...`."""
    pids = plane.pids()
    return (f"etcd {plane.etcd_url} (pid {pids.get('etcd')}), kube-apiserver {plane.url} "
            f"(pid {pids.get('kube-apiserver')}), kube-controller-manager "
            f"(pid {pids.get('kube-controller-manager')}), the pod simulator (node "
            f"{simulator.node_name}, in this process)")


@contextlib.contextmanager
def cluster(namespaces: tuple[str, ...], applied: Sequence[Sample] = (),
            workdir: Path | None = None) -> Iterator[Path]:
    """Start a local control plane ready for the controller, the `applied` samples on it; yield
    its admin kubeconfig."""
    log.info("--local: starting a local control plane (etcd, kube-apiserver, "
             "kube-controller-manager and a pod simulator)")
    found = assets.install(log=log.info)
    with ControlPlane(workdir, controller_manager=True, assets=found) as plane:
        simulator = PodSimulator(plane.url, plane.admin_token, str(plane.ca_file))
        simulator.start()
        try:
            kube = Kube.from_kubeconfig(str(plane.kubeconfig))
            crds.install(kube)
            for namespace in namespaces:
                _ensure_namespace(kube, namespace)
            for sample in applied:
                apply_sample(kube, sample.objects)
                log.info("applied %s as `kubectl apply --server-side -f` would: %s", sample.path,
                         ", ".join(f"{o['kind']} {o['metadata']['namespace']}/"
                                   f"{o['metadata']['name']}" for o in sample.objects))
            log.info("local control plane ready in %s: %s; export KUBECONFIG=%s", plane.workdir,
                     _started(plane, simulator), plane.kubeconfig)
            yield plane.kubeconfig
        finally:
            simulator.stop()
