"""Dry-run, `diff`, conflicts, fights and adoption against a real kube-apiserver, with kubectl
as the other party where it fits."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import jsonpatch
import pytest
import yaml
from helpers import (
    CONTROLLER,
    Rival,
    apptask,
    condition,
    container,
    get_deployment,
    kubectl,
    put_apptask,
    scoped,
    status_of,
    unowned_deployment,
)

from ssa_controller.apptask.diff import comparable
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH
from ssa_controller.envtest import poll_until


def run_diff(cluster, tmp_path, namespace: str, *extra: str, user: str = CONTROLLER,
             **settings: object) -> subprocess.CompletedProcess[str]:
    """`ssa-controller diff -n NAMESPACE` through the real entry point, as `user`, with a config
    of `settings` scoped to the namespace."""
    config = tmp_path / "diff.yaml"
    config.write_text(yaml.safe_dump(scoped(namespace, **settings)))
    kubeconfig = cluster.write_kubeconfig(user, tmp_path / f"kubeconfig-diff-{user}")
    return subprocess.run([sys.executable, "-m", "ssa_controller", "diff", "--config", str(config),
                           "--kubeconfig", str(kubeconfig), "-n", namespace, *extra],
                          capture_output=True, text=True, timeout=120)


# -- dry run --------------------------------------------------------------------------------

def test_dry_run_writes_nothing(admin, controller, namespace, cluster):
    count = 20
    for i in range(count):
        put_apptask(admin, apptask(f"dry-{i}", namespace, replicas=1))
    mark = cluster.audit.mark()
    process = controller(scoped(namespace, leaderElection={"enabled": True}), args=("--dry-run",))
    poll_until(lambda: process.metric('ssa_controller_applies_total{outcome="dry_run"}') >= count,
               timeout=60, message="a dry-run apply for every AppTask")
    persisted = cluster.audit.select(mark, user=CONTROLLER, writes=True, dry_run=False)
    assert persisted == []
    assert cluster.audit.count(mark, user=CONTROLLER, writes=True, dry_run=True) == count
    assert cluster.audit.count(mark, user=CONTROLLER, resource="leases") == 0
    assert all(get_deployment(admin, namespace, f"dry-{i}") is None for i in range(count))
    assert all("status" not in admin.get(APPTASKS.path(namespace, f"dry-{i}"))
               for i in range(count))


def test_diff_patch_predicts_the_real_run(admin, controller, namespace, cluster, tmp_path):
    put_apptask(admin, apptask("pred", namespace, replicas=1, env=[{"name": "A", "value": "1"}],
                               resources={"requests": {"cpu": "1000m", "memory": "64Mi"}}))
    process = controller(scoped(namespace))
    poll_until(lambda: get_deployment(admin, namespace, "pred"), timeout=30, message="created")
    poll_until(lambda: status_of(admin, namespace, "pred").get("phase") == "Ready", timeout=60)
    process.stop()

    unchanged = run_diff(cluster, tmp_path, namespace)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert "pred: unchanged" in unchanged.stdout

    put_apptask(admin, apptask("pred", namespace, replicas=2, image="nginx:1.27",
                               resources={"requests": {"cpu": "1", "memory": "64Mi"}}))
    planned = run_diff(cluster, tmp_path, namespace, "-o", "json")
    assert planned.returncode == 1, planned.stdout + planned.stderr
    (plan,) = json.loads(planned.stdout)
    assert plan["action"] == "configured"
    paths = {op["path"] for op in plan["patch"]}
    assert "/spec/replicas" in paths
    assert not any("cpu" in p for p in paths), "1000m vs 1 must not show as a change"
    live = get_deployment(admin, namespace, "pred")
    predicted = jsonpatch.apply_patch(comparable(live), plan["patch"])

    controller(scoped(namespace))
    poll_until(lambda: container(get_deployment(admin, namespace, "pred"))["image"] == "nginx:1.27",
               timeout=30, message="real run applied")
    actual = comparable(get_deployment(admin, namespace, "pred"))
    assert actual["spec"] == predicted["spec"]
    assert actual["metadata"]["labels"] == predicted["metadata"]["labels"]


def test_diff_reports_created_and_exit_codes(admin, namespace, cluster, tmp_path):
    put_apptask(admin, apptask("new", namespace))
    created = run_diff(cluster, tmp_path, namespace)
    assert created.returncode == 1, created.stdout + created.stderr
    assert "new: created" in created.stdout
    assert get_deployment(admin, namespace, "new") is None
    refused = run_diff(cluster, tmp_path, namespace, user="alice")
    assert refused.returncode == 2
    assert "403" in refused.stderr


def verdicts(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    """The plans of a `diff -o json` by AppTask name."""
    return {plan["key"].split("/", 1)[1]: plan for plan in json.loads(result.stdout)}


def test_diff_lists_every_apptask_with_its_verdict_and_exits_as_documented(
        admin, controller, namespace, cluster, tmp_path):
    """Every AppTask appears with its verdict, conflicts and paused changes included; the exit
    code is 1 as soon as one Deployment differs from its spec or cannot be brought to it. With
    force off, as the controller that ran before."""
    polite = {"apply": {"force": False}}
    admin.create(DEPLOYMENTS.path(namespace), unowned_deployment(namespace, "taken", {"a": "b"}))
    for name in ("same", "taken", "contested", "held", "gone"):
        put_apptask(admin, apptask(name, namespace, replicas=1))
    process = controller(scoped(namespace, **polite))
    for name, phase in (("same", "Ready"), ("contested", "Ready"), ("held", "Ready"),
                        ("gone", "Ready"), ("taken", "Conflict")):
        poll_until(lambda n=name, p=phase: status_of(admin, namespace, n).get("phase") == p,
                   timeout=60, message=f"{name} {phase}")
    process.stop()
    kubectl(cluster, "-n", namespace, "patch", "deployment/contested", "--type", "merge",
            "-p", '{"spec":{"replicas":3}}')
    admin.delete(DEPLOYMENTS.path(namespace, "gone"))
    poll_until(lambda: get_deployment(admin, namespace, "gone") is None, timeout=30,
               message="Deployment gone deleted")

    plain = run_diff(cluster, tmp_path, namespace, **polite)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    lines = plain.stdout.splitlines()
    assert f"{namespace}/same: unchanged" in lines
    assert any(line.startswith(f"{namespace}/taken: conflict (Deployment taken exists")
               for line in lines), lines
    assert any(line.startswith(f"{namespace}/contested: conflict (apply conflicts with")
               and ".spec.replicas" in line for line in lines), lines
    assert f"{namespace}/gone: created" in lines  # its status names it, but it is gone

    put_apptask(admin, apptask("held", namespace, replicas=1, image="nginx:1.27", paused=True))
    put_apptask(admin, apptask("new", namespace))
    put_apptask(admin, apptask("bad", namespace, labels={"apptasks.example.com/name": "x"}))
    leaving = APPTASKS.path(namespace, "leaving")
    admin.create(APPTASKS.path(namespace), {**apptask("leaving", namespace),
                                            "metadata": {"name": "leaving",
                                                         "finalizers": ["tests/hold"]}})
    admin.delete(leaving)  # held by its finalizer: being deleted
    try:
        planned = run_diff(cluster, tmp_path, namespace, "-o", "json", **polite)
    finally:
        admin.patch(leaving, {"metadata": {"finalizers": None}}, MERGE_PATCH)
    assert planned.returncode == 1, planned.stdout + planned.stderr
    found = verdicts(planned)
    assert {name: plan["action"] for name, plan in found.items()} == {
        "same": "unchanged", "taken": "conflict", "contested": "conflict", "held": "paused",
        "new": "created", "bad": "invalid", "gone": "created", "leaving": "skipped"}
    assert found["held"]["whenUnpaused"] == "configured"
    assert {"op": "replace", "path": "/spec/template/spec/containers/0/image",
            "value": "nginx:1.27"} in found["held"]["patch"]
    assert "is reserved" in found["bad"]["detail"]
    assert found["leaving"]["detail"] == "the AppTask is being deleted"
    assert container(get_deployment(admin, namespace, "held"))["image"] == "nginx:1.25"
    assert get_deployment(admin, namespace, "new") is None


def test_a_paused_apptask_in_sync_is_no_difference(admin, controller, namespace, cluster,
                                                    tmp_path):
    put_apptask(admin, apptask("rest", namespace, replicas=1))
    process = controller(scoped(namespace))
    poll_until(lambda: status_of(admin, namespace, "rest").get("phase") == "Ready", timeout=60)
    process.stop()
    put_apptask(admin, apptask("rest", namespace, replicas=1, paused=True))
    result = run_diff(cluster, tmp_path, namespace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{namespace}/rest: paused (when unpaused: unchanged)"]


def test_diff_with_another_field_manager_shows_no_type_fields(admin, controller, namespace,
                                                               cluster, tmp_path):
    """The live Deployment comes from a list, whose items carry no apiVersion and kind: they
    are no change. Another field manager makes the dry-run apply happen (ownership differs)."""
    put_apptask(admin, apptask("typed", namespace, replicas=1))
    process = controller(scoped(namespace))
    poll_until(lambda: status_of(admin, namespace, "typed").get("phase") == "Ready", timeout=60)
    process.stop()
    result = run_diff(cluster, tmp_path, namespace, fieldManager="another-manager")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{namespace}/typed: unchanged"]


# -- conflicts and fights -------------------------------------------------------------------

def test_one_manual_change_is_restored_once(admin, controller, namespace, cluster):
    controller(scoped(namespace))
    put_apptask(admin, apptask("scale", namespace, replicas=2))
    poll_until(lambda: status_of(admin, namespace, "scale").get("phase") == "Ready", timeout=60)
    mark = cluster.audit.mark()
    kubectl(cluster, "-n", namespace, "scale", "deployment/scale", "--replicas=5")
    poll_until(lambda: cluster.audit.count(mark, user=CONTROLLER, resource="deployments",
                                           verb="patch") >= 1, timeout=30, message="restored")
    poll_until(lambda: get_deployment(admin, namespace, "scale")["spec"]["replicas"] == 2,
               timeout=30, message="replicas back to 2")
    poll_until(lambda: status_of(admin, namespace, "scale").get("phase") == "Ready", timeout=60)
    assert cluster.audit.count(mark, user=CONTROLLER, resource="deployments", verb="patch") == 1
    assert condition(status_of(admin, namespace, "scale"), "Conflict")["status"] == "False"


FIGHT_MEASURED = 6.0
"""Seconds of fighting measured once the fight is detected. Measured on this machine: damped,
the controller applied 2 times (Deployment generation +4); undamped, 23-28 times (+47-58)."""


def test_fight_is_detected_and_damped(admin, controller, namespace, cluster):
    process = controller(scoped(namespace, fights={"threshold": 3, "window": "5s",
                                                   "backoffBase": "2s", "backoffCap": "30s"}))
    put_apptask(admin, apptask("fought", namespace, replicas=2))
    poll_until(lambda: get_deployment(admin, namespace, "fought"), timeout=30, message="created")
    with Rival(admin, namespace, "fought"):
        status = poll_until(
            lambda: (s := status_of(admin, namespace, "fought")).get("phase") == "Conflict" and s,
            timeout=15, message="fight detected within the window")
        conflict = condition(status, "Conflict")
        assert conflict["status"] == "True" and conflict["reason"] == "FieldFight"
        assert "rival-controller" in conflict["message"] and ".spec.replicas" in conflict["message"]
        # counted once the reconcile that wrote the status returns
        poll_until(lambda: process.metric("ssa_controller_fights_detected_total") == 1,
                   timeout=5, message="the fight counted")
        generation = get_deployment(admin, namespace, "fought")["metadata"]["generation"]
        mark = cluster.audit.mark()
        # A fixed window of fighting is the measurement itself (the AppTask is left alone in it:
        # a new generation would end the fight).
        time.sleep(FIGHT_MEASURED)
        applies = cluster.audit.count(mark, user=CONTROLLER, resource="deployments", verb="patch")
        climbed = get_deployment(admin, namespace, "fought")["metadata"]["generation"] - generation
        print(f"{FIGHT_MEASURED}s of fighting: {applies} applies, generation +{climbed}")
        # Damped (base 2s, doubling): re-applies after about 2 s and 6 s. Undamped, the
        # controller re-applies at the rival's 5 writes/s, each apply and take-back +2.
        assert 1 <= applies <= 5, f"{applies} applies in {FIGHT_MEASURED}s of fighting"
        assert climbed <= 12, f"generation +{climbed} in {FIGHT_MEASURED}s of fighting"
    poll_until(lambda: condition(status_of(admin, namespace, "fought"), "Conflict").get("status")
               == "False", timeout=60, message="fight over once the rival stopped")
    assert get_deployment(admin, namespace, "fought")["spec"]["replicas"] == 2


def test_fields_the_apptask_leaves_alone_are_never_a_fight(admin, controller, namespace, cluster):
    process = controller(scoped(namespace))
    put_apptask(admin, apptask("calm", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "calm").get("phase") == "Ready", timeout=60)
    mark = cluster.audit.mark()
    for seconds in range(1, 11):
        admin.patch(DEPLOYMENTS.path(namespace, "calm"), {"spec": {"minReadySeconds": seconds}},
                    MERGE_PATCH, {"fieldManager": "other-tool"})
    poll_until(lambda: get_deployment(admin, namespace, "calm").get("status", {})
               .get("observedGeneration") == get_deployment(admin, namespace, "calm")["metadata"]
               ["generation"], timeout=30, message="deployment controller caught up")
    assert cluster.audit.count(mark, user=CONTROLLER, resource="deployments", writes=True) == 0
    assert process.metric("ssa_controller_fights_detected_total") == 0
    assert get_deployment(admin, namespace, "calm")["spec"]["minReadySeconds"] == 10


def test_no_force_reports_the_conflict(admin, controller, namespace, cluster):
    controller(scoped(namespace, apply={"force": False}))
    put_apptask(admin, apptask("polite", namespace, replicas=2))
    poll_until(lambda: get_deployment(admin, namespace, "polite"), timeout=30, message="created")
    kubectl(cluster, "-n", namespace, "patch", "deployment/polite", "--type", "merge",
            "-p", '{"spec":{"replicas":4}}')
    status = poll_until(lambda: (s := status_of(admin, namespace, "polite")).get("phase")
                        == "Conflict" and s, timeout=30, message="Conflict phase")
    conflict = condition(status, "Conflict")
    assert conflict["reason"] == "ApplyConflict"
    assert '"kubectl' in conflict["message"] and ".spec.replicas" in conflict["message"]
    assert get_deployment(admin, namespace, "polite")["spec"]["replicas"] == 4


# -- adoption -------------------------------------------------------------------------------

def existing_deployment(namespace: str, name: str) -> dict[str, object]:
    """What `kubectl apply` made before the AppTask existed: its selector, two env vars."""
    return unowned_deployment(namespace, name, {"apptasks.example.com/name": name},
                              env=[{"name": "KEEP", "value": "1"}, {"name": "OLD", "value": "2"}])


@pytest.mark.parametrize("adopt", [False, True])
def test_existing_deployment_adoption(admin, controller, namespace, cluster, adopt):
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(existing_deployment(namespace, "legacy")))
    controller(scoped(namespace, apply={"adoptExisting": adopt}))
    env = [{"name": "KEEP", "value": "1"}, {"name": "OLD", "value": "2"}]
    put_apptask(admin, apptask("legacy", namespace, replicas=1, env=env))
    if not adopt:
        status = poll_until(lambda: (s := status_of(admin, namespace, "legacy")).get("phase")
                            == "Conflict" and s, timeout=30, message="reported, not taken")
        assert condition(status, "Conflict")["reason"] == "DeploymentExists"
        assert "ownerReferences" not in get_deployment(admin, namespace, "legacy")["metadata"]
        return
    poll_until(lambda: get_deployment(admin, namespace, "legacy")["metadata"]
               .get("ownerReferences"), timeout=30, message="adopted")
    put_apptask(admin, apptask("legacy", namespace, replicas=1, env=env[:1]))
    poll_until(lambda: container(get_deployment(admin, namespace, "legacy")).get("env")
               == [{"name": "KEEP", "value": "1"}], timeout=30,
               message="a field kubectl applied and the AppTask dropped is removed")
