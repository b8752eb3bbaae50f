"""Leader election while the caches cannot sync: two replicas started before the AppTask CRD
exists, on a control plane of their own (the session cluster has the CRD installed).

The leader waits for its caches without pausing its renewals, so for longer than a lease
duration the follower never takes the lease over; both stay up and pass /healthz throughout
(for longer than its stuck-leader check allows a leader without renewal), only one identity
ever writes, and the AppTask converges within seconds of
the CRD appearing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from helpers import (
    CONTROLLER_NAMESPACE,
    TEST_USERS,
    apply_rbac,
    apptask,
    assert_one_writer_at_a_time,
    container,
    controller_writes,
    get_deployment,
    put_apptask,
    rbac_objects,
    scoped,
    status_of,
)

from ssa_controller import crds
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import LEASES
from ssa_controller.envtest import Assets, ControlPlane, PollTimeout, poll_until

NAMESPACE = "demo"
LEASE = "ssa-controller"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15.0, 10.0, 2.0
"""client-go's election timings."""
CONFIG = scoped(NAMESPACE, leaderElection={
    "enabled": True, "namespace": CONTROLLER_NAMESPACE, "leaseName": LEASE,
    "leaseDuration": f"{LEASE_DURATION:g}s", "renewDeadline": f"{RENEW_DEADLINE:g}s",
    "retryPeriod": f"{RETRY_PERIOD:g}s"})
STUCK_AFTER = LEASE_DURATION + 20.0
"""/healthz fails a leader that has not renewed for this long (client-go's HealthzAdaptor)."""
CRD_DELAY = 20.0
"""Longer than a lease duration: a leader that stopped renewing would have been replaced."""
CONVERGE = 10.0
"""The watch of a missing resource retries on a short cap (5 s); then one reconcile."""
STATUS_SETTLE = 5.0
"""No kube-controller-manager here, so the status write waits out the reconciler's settle."""

Process = Any
"""conftest.ControllerProcess (conftest modules are not importable by name)."""


@pytest.fixture
def bare_plane(assets: Assets, tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane without the AppTask CRD, with the controller namespace, the manifests'
    RBAC (bound to the test users) and the namespace `demo`."""
    with ControlPlane(tmp_path / "plane", assets=assets) as plane:
        admin = plane.client(user_agent="tests")
        for name in (CONTROLLER_NAMESPACE, NAMESPACE):
            admin.create("/api/v1/namespaces", {"metadata": {"name": name}})
        apply_rbac(admin, rbac_objects())
        admin.close()
        yield plane


@pytest.fixture
def bare_admin(bare_plane: ControlPlane) -> Iterator[Kube]:
    kube = bare_plane.client(user_agent="tests")
    yield kube
    kube.close()


def leaders(pair: list[Process]) -> list[Process]:
    return [p for p in pair if p.metric("leader_election_master_status") == 1.0]


def trouble(pair: list[Process]) -> str | None:
    """What is wrong now: a process gone or failing /healthz, or two leaders (None: nothing)."""
    for process in pair:
        if process.proc.poll() is not None:
            return f"{process.user} exited with {process.proc.returncode}"
        if process.get(process.health_port, "/healthz")[0] != 200:
            return f"{process.user} fails /healthz"
    return "two leaders" if len(leaders(pair)) > 1 else None


def assert_no_trouble_for(pair: list[Process], seconds: float) -> None:
    try:
        found = poll_until(lambda: trouble(pair), timeout=seconds, interval=0.5,
                           ignore=(urllib3.exceptions.HTTPError,))
    except PollTimeout:
        return
    raise AssertionError(found)


def applied(admin: Kube) -> bool:
    deployment = get_deployment(admin, NAMESPACE, "app")
    return deployment is not None and container(deployment)["image"] == "nginx:1.25"


def test_a_leader_waiting_for_a_missing_crd_keeps_renewing(
        bare_plane: ControlPlane, bare_admin: Kube, controller: Callable[..., Process]) -> None:
    mark = bare_plane.audit.mark()
    pair = [controller(CONFIG, user=user, ready=False, plane=bare_plane) for user in TEST_USERS]
    (leader,) = poll_until(lambda: leaders(pair), timeout=30, message="a leader",
                           ignore=(urllib3.exceptions.HTTPError,))
    led = time.monotonic()
    holder = bare_admin.get(LEASES.path(CONTROLLER_NAMESPACE, LEASE))["spec"]["holderIdentity"]
    assert_no_trouble_for(pair, CRD_DELAY)

    crds.install(bare_admin)
    put_apptask(bare_admin, apptask("app", NAMESPACE, replicas=1))
    poll_until(lambda: applied(bare_admin), timeout=CONVERGE, interval=0.1,
               message="the Deployment applied after the CRD appeared")
    poll_until(lambda: status_of(bare_admin, NAMESPACE, "app").get("observedGeneration") == 1,
               timeout=STATUS_SETTLE + 5, message="the AppTask's status")
    # A second leader would start its workers once synced, and be noticed by the first one
    # (which then exits) within the renew deadline; and the leader has been waiting for its
    # caches, then working, for longer than the stuck-leader check allows without renewals.
    assert_no_trouble_for(pair, max(RENEW_DEADLINE, led + STUCK_AFTER + 1 - time.monotonic()))

    assert leaders(pair) == [leader]
    spec = bare_admin.get(LEASES.path(CONTROLLER_NAMESPACE, LEASE))["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == (holder, 0)
    writes = controller_writes(bare_plane.audit, mark, NAMESPACE, LEASE)
    assert assert_one_writer_at_a_time(writes) == [leader.user]
