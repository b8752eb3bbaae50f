"""A local cluster for `ssa-controller run --local`: the envtest control plane, the pod
simulator, the CRD, the leader-election namespace and the sample AppTask."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import yaml

from . import crds
from .envtest import assets
from .envtest.controlplane import ControlPlane
from .envtest.podsim import PodSimulator
from .kube import APPTASKS, ApiError, Kube

log = logging.getLogger(__name__)
SAMPLE = Path(__file__).resolve().parent.parent / "config" / "sample-apptask.yaml"


def _ensure_namespace(kube: Kube, name: str) -> None:
    try:
        kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    except ApiError as exc:
        if exc.status != 409:
            raise


@contextlib.contextmanager
def cluster(namespaces: tuple[str, ...], workdir: Path | None = None) -> Iterator[Path]:
    """Start a local control plane ready for the controller; yield its admin kubeconfig."""
    log.info("no kubeconfig given: starting a local control plane (etcd + kube-apiserver)")
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
                sample = yaml.safe_load(SAMPLE.read_text())
                _ensure_namespace(kube, sample["metadata"]["namespace"])
                sample_path = APPTASKS.path(sample["metadata"]["namespace"],
                                            sample["metadata"]["name"])
                kube.apply(sample_path, sample, field_manager="ssa-controller-local", force=True)
            log.info("local control plane ready: export KUBECONFIG=%s", plane.kubeconfig)
            yield plane.kubeconfig
        finally:
            simulator.stop()
