"""What a user meets first, against the real API server and through the real entry point
(`python -m ssa_controller`): the status of a paused AppTask and of one whose Deployment is
someone else's, what `--local` connects to, and what `run` says at start.
"""

from __future__ import annotations

from helpers import (
    apptask,
    condition,
    get_deployment,
    put_apptask,
    scoped,
    status_of,
    unowned_deployment,
)

from ssa_controller.envtest import poll_until
from ssa_controller.kube import DEPLOYMENTS


def test_a_paused_apptask_in_sync_is_synced(admin, controller, namespace):
    """Paused, with nothing pending (test_controller.py::test_paused_apptask_is_left_alone: with
    a change pending)."""
    controller(scoped(namespace))
    put_apptask(admin, apptask("rest", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "rest").get("phase") == "Ready", timeout=60)
    put_apptask(admin, apptask("rest", namespace, replicas=1, paused=True))
    status = poll_until(lambda: (s := status_of(admin, namespace, "rest")).get("phase")
                        == "Paused" and s, timeout=30, message="phase Paused")
    synced = condition(status, "Synced")
    assert (synced["status"], synced["reason"]) == ("True", "Paused"), synced
    assert condition(status, "Ready")["status"] == "True"


def test_readiness_is_reported_only_for_a_deployment_the_apptask_controls(admin, controller,
                                                                         namespace):
    admin.create(DEPLOYMENTS.path(namespace),
                 unowned_deployment(namespace, "theirs", {"app": "theirs"}))
    poll_until(lambda: get_deployment(admin, namespace, "theirs").get("status", {})
               .get("readyReplicas") == 1, timeout=60, message="their Deployment ready")
    controller(scoped(namespace))
    put_apptask(admin, apptask("theirs", namespace, replicas=1))
    status = poll_until(lambda: (s := status_of(admin, namespace, "theirs")).get("phase")
                        == "Conflict" and s, timeout=30, message="phase Conflict")
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentNotControlled"), ready
    assert status["readyReplicas"] == 0
    assert "deploymentName" not in status
