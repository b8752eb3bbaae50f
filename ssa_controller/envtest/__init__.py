"""A real local Kubernetes control plane for tests, benchmarks and the local run (envtest-style).

- assets: find, or build once from Debian's source package and cache, the binaries;
- controlplane: etcd + kube-apiserver (+ kube-controller-manager) as a context manager;
- audit: count API requests from kube-apiserver's audit log;
- podsim: a fake node that runs pods (bound, Running, Ready; not ready with InvalidImageName
  when an image reference does not parse) so Deployment readiness is real;
- polling: poll_until, the deadline-bounded wait every test uses;
- clients are `ssa_controller.client.kube.Kube` (re-exported here with `ApiError`), e.g. from
  `ControlPlane.client(user)`.
Command line: `python -m ssa_controller.envtest install|start`.
"""

from __future__ import annotations

from ..client.kube import Kube
from ..client.wire import ApiError
from .assets import (
    Assets,
    AssetsError,
    BuildFailed,
    MissingPrerequisite,
    cache_dir,
    find_assets,
    install,
)
from .audit import AuditEvent, AuditLog, format_summary
from .controlplane import (
    ADMIN_USER,
    CONTROLLER_MANAGER_USER,
    DEFAULT_USERS,
    POD_SIMULATOR_USER,
    ControlPlane,
    ControlPlaneError,
    die_with_parent,
)
from .podsim import PodSimulator
from .polling import PollTimeout, poll_until

__all__ = [
    "ADMIN_USER",
    "CONTROLLER_MANAGER_USER",
    "DEFAULT_USERS",
    "POD_SIMULATOR_USER",
    "ApiError",
    "Assets",
    "AssetsError",
    "AuditEvent",
    "AuditLog",
    "BuildFailed",
    "ControlPlane",
    "ControlPlaneError",
    "Kube",
    "MissingPrerequisite",
    "PodSimulator",
    "PollTimeout",
    "cache_dir",
    "die_with_parent",
    "find_assets",
    "format_summary",
    "install",
    "poll_until",
]
