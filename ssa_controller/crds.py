"""Installs or upgrades the AppTask CRD by server-side apply and waits until it is served."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml

from .client.kube import Kube
from .client.resources import CRDS
from .client.wire import ApiError

FIELD_MANAGER = "ssa-controller-install"
IMAGE_CRD = Path("/usr/share/ssa-controller/crd.yaml")


def default_crd_file() -> Path:
    """The CRD manifest: $SSA_CRD_FILE, the checkout's manifests/crd.yaml, or the image's copy."""
    candidates = [Path(os.environ["SSA_CRD_FILE"])] if os.environ.get("SSA_CRD_FILE") else []
    candidates += [Path(__file__).resolve().parent.parent / "manifests" / "crd.yaml", IMAGE_CRD]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"CRD manifest not found in {', '.join(map(str, candidates))}")


def _established(crd: dict[str, Any]) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in crd.get("status", {}).get("conditions") or ())


def install(kube: Kube, path: Path | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Apply the CRD (forcing ownership of its fields) and wait until it is Established."""
    body = yaml.safe_load((path or default_crd_file()).read_text())
    name = body["metadata"]["name"]
    kube.apply(CRDS.path(name=name), body, field_manager=FIELD_MANAGER, force=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            crd = kube.get(CRDS.path(name=name))
            if _established(crd):
                return crd
        except ApiError as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s")
        time.sleep(0.1)
