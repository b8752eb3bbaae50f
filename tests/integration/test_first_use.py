"""What a user meets first, against the real API server and through the real entry point
(`python -m ssa_controller`): the status of a paused AppTask and of one whose Deployment is
someone else's, what `run` says at start and which flags it takes, refused credentials, what
`--local` connects to and what it starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT, free_port
from helpers import (
    CONTROLLER,
    apptask,
    condition,
    get_apptask,
    get_deployment,
    kubectl,
    put_apptask,
    scoped,
    status_of,
    unowned_deployment,
)

from ssa_controller import local, version
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, EVENTS
from ssa_controller.envtest import poll_until

OUTSIDER = "alice"
"""A test user with no permissions (an unrelated kubeconfig's identity)."""


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


def test_run_says_at_start_which_build_talks_to_which_server(controller, namespace, cluster):
    process = controller(scoped(namespace))
    build = version.build_info()
    assert (f"{build}; API server {cluster.url} (kubeconfig {process.kubeconfig}, "
            "context envtest)") in process.log()
    (info,) = [(k, v) for k, v in process.metrics().items()
               if k.startswith("ssa_controller_build_info{")]
    assert info[1] == 1.0
    for label in (f'version="{build.version}"', f'revision="{build.revision}"',
                  f'python="{build.python}"'):
        assert label in info[0], info


def test_controller_runtime_flags_override_the_config(admin, controller, namespace, cluster,
                                                      lease_name):
    mark = cluster.audit.mark()
    metrics, health = free_port(), free_port()
    process = controller(
        scoped(namespace, leaderElection={"enabled": True, "leaseName": lease_name}),
        args=("--metrics-bind-address", f"127.0.0.1:{metrics}",
              "--health-probe-bind-address", f"127.0.0.1:{health}", "--leader-elect=false"),
        ready=False)
    process.metrics_port, process.health_port = metrics, health  # the flags', not the file's
    process.wait_ready()
    put_apptask(admin, apptask("flagged", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "flagged").get("phase") == "Ready",
               timeout=60, message="reconciled without leader election")
    assert cluster.audit.count(mark, user=CONTROLLER, resource="leases") == 0
    assert process.metric('workqueue_adds_total{name="apptask"}') >= 1


def wrong_token(cluster, tmp_path: Path) -> Path:
    """The controller's kubeconfig with a token the server does not know."""
    path = cluster.write_kubeconfig(CONTROLLER, tmp_path / "kubeconfig-wrong")
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"]["token"] = "not-a-token"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_refused_token_says_which_server_refused_which_credentials(cluster, namespace,
                                                                    tmp_path):
    kubeconfig = wrong_token(cluster, tmp_path)
    config = tmp_path / "controller.yaml"
    config.write_text(yaml.safe_dump(scoped(namespace)))
    expected = (f"ssa-controller: the API server at {cluster.url} refused the credentials of "
                f"kubeconfig {kubeconfig}, context envtest (401 Unauthorized): check that its "
                "token or client certificate is current (not expired or revoked) and meant for "
                "this server")
    for command in (("diff", "--config", str(config)), ("run", "--once", "--config", str(config)),
                    ("install-crds",)):
        result = subprocess.run([sys.executable, "-m", "ssa_controller", *command,
                                 "--kubeconfig", str(kubeconfig)], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.splitlines()[-1] == expected, (command, result.stderr)
        assert "Traceback" not in result.stderr


def test_local_starts_its_own_control_plane_whatever_kubeconfig_exists(cluster, assets,
                                                                       tmp_path):
    """$KUBECONFIG and ~/.kube/config both name the test cluster (as a user without
    permissions): `run --local --once` must not send it a single request, and runs its one
    pass over the sample on the control plane it starts, naming everything it started."""
    kubeconfig = cluster.write_kubeconfig(OUTSIDER, tmp_path / "kubeconfig")
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    shutil.copy(kubeconfig, home / ".kube" / "config")
    mark = cluster.audit.mark()
    result = subprocess.run(
        [sys.executable, "-m", "ssa_controller", "run", "--local", "--once", "--config",
         "config/controller.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home),
             "KUBEBUILDER_ASSETS": str(assets.folder)})
    assert result.returncode == 0, result.stderr[-4000:]
    assert cluster.audit.count(mark, user=OUTSIDER) == 0
    log = result.stderr
    (ready,) = [line for line in log.splitlines() if "local control plane ready" in line]
    for started in ("etcd http://127.0.0.1:", "kube-apiserver https://127.0.0.1:",
                    "kube-controller-manager (pid ", "the pod simulator"):
        assert started in ready, ready
    assert "one pass over 1 AppTasks: 0 failed" in log, log[-3000:]


def test_the_sample_is_created_as_its_comment_says(admin, namespace, cluster, tmp_path):
    """As `kubectl apply --server-side -f config/sample-apptask.yaml`: applying it so again,
    changed, takes it over without a conflict or a warning."""
    assert "`kubectl apply --server-side -f\n# config/sample-apptask.yaml`" in (
        local.SAMPLE.read_text())
    sample = yaml.safe_load(local.SAMPLE.read_text())
    sample["metadata"]["namespace"] = namespace
    local.apply_sample(admin, sample)
    sample["spec"]["image"] = "nginx:1.27"
    changed = tmp_path / "sample.yaml"
    changed.write_text(yaml.safe_dump(sample))
    result = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply",
                             "--server-side", "-f", str(changed)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert get_apptask(admin, namespace, "hello")["spec"]["image"] == "nginx:1.27"


def notes(admin, namespace: str, name: str) -> set[str]:
    """The notes of the Events about the AppTask `name`."""
    return {e["note"] for e in admin.list(EVENTS.path(namespace))["items"]
            if e["regarding"].get("name") == name}


def json_lines(process) -> list[dict[str, object]]:
    return [json.loads(line) for line in process.log().splitlines()]


def logged(process, message: str) -> dict[str, object] | None:
    return next((line for line in json_lines(process) if line["msg"] == message), None)


def test_take_backs_hand_offs_and_deletions_say_what_and_who_in_events_and_json_logs(
        admin, controller, namespace, cluster):
    process = controller(scoped(namespace, logging={"format": "json"}))
    put_apptask(admin, apptask("drifty", namespace, replicas=2))
    poll_until(lambda: status_of(admin, namespace, "drifty").get("phase") == "Ready",
               timeout=60, message="Ready")
    key = f"{namespace}/drifty"

    kubectl(cluster, "-n", namespace, "scale", "deployment/drifty", "--replicas=5")
    scaled = "restored .spec.replicas (5 -> 2), changed by an unrecorded writer"  # v1.20's scale
    poll_until(lambda: f"Deployment drifty: {scaled}" in notes(admin, namespace, "drifty"),
               timeout=30, message="the Event of the restored replicas")
    poll_until(lambda: get_deployment(admin, namespace, "drifty")["status"].get(
        "observedGeneration") == get_deployment(admin, namespace, "drifty")["metadata"][
        "generation"], timeout=30, message="the Deployment controller caught up")
    kubectl(cluster, "-n", namespace, "patch", "deployment/drifty", "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [{"name": "app",
                                                        "image": "nginx:1.26"}]}}}}))
    patched = ('restored .spec.template.spec.containers[name="app"].image '
               "(nginx:1.26 -> nginx:1.25), changed by kubectl-patch")
    poll_until(lambda: f"Deployment drifty: {patched}" in notes(admin, namespace, "drifty"),
               timeout=30, message="the Event of the restored image")

    put_apptask(admin, apptask("drifty", namespace))  # replicas no longer specified
    handed = f"{key}: handed .spec.replicas (2) over to ssa-controller-handoff"
    poll_until(lambda: logged(process, handed), timeout=30, message="the hand-off logged")
    admin.delete(APPTASKS.path(namespace, "drifty"))
    deleted = poll_until(
        lambda: logged(process, f"{key}: AppTask deleted; its Deployment goes by garbage "
                       "collection"), timeout=30, message="the deletion logged")
    assert {k: deleted[k] for k in ("controller", "namespace", "name")} == {
        "controller": "apptask", "namespace": namespace, "name": "drifty"}

    lines = json_lines(process)
    assert not [line for line in lines if "{'" in str(line["msg"])]  # no Python dict reprs
    for message in (f"{key}: applied Deployment ({scaled})",
                    f"{key}: applied Deployment ({patched})", handed):
        line = logged(process, message)
        assert line is not None, message
        assert (line["controller"], line["namespace"], line["name"]) == (
            "apptask", namespace, "drifty")
        assert len(str(line["reconcileID"])) == 36, line
    reconciles = {line["reconcileID"] for line in lines if line["logger"] ==
                  "ssa_controller.reconciler" and str(line["msg"]).startswith(f"{key}: ")}
    assert len(reconciles) >= 4 and None not in reconciles


def test_a_pod_whose_image_reference_cannot_be_parsed_stays_not_ready(admin, controller,
                                                                     namespace):
    """The pod simulator reports it as the kubelet does, so the Ready=False path shows."""
    controller(scoped(namespace))
    put_apptask(admin, apptask("unpullable", namespace, replicas=1,
                               image="nginx latest with spaces"))

    def waiting() -> str | None:
        pods = admin.list(f"/api/v1/namespaces/{namespace}/pods",
                          {"labelSelector": "apptasks.example.com/name=unpullable"})["items"]
        statuses = [c for p in pods for c in p.get("status", {}).get("containerStatuses", [])]
        return next((c["state"].get("waiting", {}).get("reason") for c in statuses), None)

    assert poll_until(waiting, timeout=60, message="the pod's container status") == \
        "InvalidImageName"
    status = poll_until(
        lambda: (s := status_of(admin, namespace, "unpullable")).get("conditions") and
        condition(s, "Ready").get("message") == "0/1 replicas ready, 1 updated" and s,
        timeout=60, message="the AppTask's Ready condition")
    assert (status["phase"], condition(status, "Ready")["status"]) == ("Progressing", "False")
