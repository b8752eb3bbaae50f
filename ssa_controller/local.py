"""A local cluster for `ssa-controller run --local`: the envtest control plane (etcd,
kube-apiserver, kube-controller-manager), the pod simulator, the CRD, the leader-election
namespace and the sample AppTask."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import crds
from .client.kube import Kube
from .client.resources import APPTASKS
from .client.wire import ApiError
from .envtest import assets
from .envtest.controlplane import ControlPlane
from .envtest.podsim import PodSimulator

log = logging.getLogger(__name__)
SAMPLE = Path(__file__).resolve().parent.parent / "config" / "sample-apptask.yaml"
SAMPLE_MANAGER = "kubectl"
"""The sample is applied as `kubectl apply --server-side -f config/sample-apptask.yaml` applies
it (kubectl's field manager), so that doing so later, changed, takes it over without conflict."""


def _ensure_namespace(kube: Kube, name: str) -> None:
    try:
        kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    except ApiError as exc:
        if exc.status != 409:
            raise


def apply_sample(kube: Kube, sample: Mapping[str, Any]) -> None:
    """Create the sample AppTask (and its namespace) as kubectl's server-side apply would."""
    meta = sample["metadata"]
    _ensure_namespace(kube, meta["namespace"])
    kube.apply(APPTASKS.path(meta["namespace"], meta["name"]), dict(sample),
               field_manager=SAMPLE_MANAGER, force=True)
    log.info("applied the sample AppTask %s/%s as `kubectl apply --server-side -f %s` would",
             meta["namespace"], meta["name"], SAMPLE.relative_to(SAMPLE.parent.parent))


def _started(plane: ControlPlane, simulator: PodSimulator) -> str:
    """What runs, with the process ids: `etcd http://... (pid 12), kube-apiserver ...`."""
    pids = plane.pids()
    return (f"etcd {plane.etcd_url} (pid {pids.get('etcd')}), kube-apiserver {plane.url} "
            f"(pid {pids.get('kube-apiserver')}), kube-controller-manager "
            f"(pid {pids.get('kube-controller-manager')}), the pod simulator (node "
            f"{simulator.node_name}, in this process)")


@contextlib.contextmanager
def cluster(namespaces: tuple[str, ...], workdir: Path | None = None) -> Iterator[Path]:
    """Start a local control plane ready for the controller; yield its admin kubeconfig."""
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
            if SAMPLE.is_file():
                apply_sample(kube, yaml.safe_load(SAMPLE.read_text()))
            log.info("local control plane ready in %s: %s; export KUBECONFIG=%s", plane.workdir,
                     _started(plane, simulator), plane.kubeconfig)
            yield plane.kubeconfig
        finally:
            simulator.stop()
