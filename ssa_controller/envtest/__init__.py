"""A real local Kubernetes control plane for tests, benchmarks and the local run (envtest-style).

- assets: find, or build once from Debian's source package and cache, the binaries;
- controlplane: etcd + kube-apiserver (+ kube-controller-manager) as a context manager;
- audit: count API requests from kube-apiserver's audit log;
- podsim: a fake node that runs pods (bound, Running, Ready) so Deployment readiness is real;
- polling: poll_until, the deadline-bounded wait every test uses;
- rest: the small JSON client these tools use (independent of ssa_controller.kube).
Command line: `python -m ssa_controller.envtest install|start`.
"""

from __future__ import annotations

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
)
from .podsim import PodSimulator
from .polling import PollTimeout, poll_until
from .rest import RestClient, RestError

__all__ = [
    "ADMIN_USER",
    "CONTROLLER_MANAGER_USER",
    "DEFAULT_USERS",
    "POD_SIMULATOR_USER",
    "Assets",
    "AssetsError",
    "AuditEvent",
    "AuditLog",
    "BuildFailed",
    "ControlPlane",
    "ControlPlaneError",
    "MissingPrerequisite",
    "PodSimulator",
    "PollTimeout",
    "RestClient",
    "RestError",
    "cache_dir",
    "find_assets",
    "format_summary",
    "install",
    "poll_until",
]
