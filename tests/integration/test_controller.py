"""The controller against a real kube-apiserver: convergence, SSA ownership, gated status,
zero-cost resyncs, invalid specs, backoff and rate limits, proven by objects and the audit log."""

from __future__ import annotations

import collections
import subprocess
import sys
import time

from helpers import (
    CONTROLLER,
    apptask,
    condition,
    container,
    get_apptask,
    get_deployment,
    put_apptask,
    scoped,
    status_of,
)

from ssa_controller.apptask import desired
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.envtest import PollTimeout, poll_until
from ssa_controller.runtime import fieldset


def test_create_update_delete_converge(admin, controller, namespace, cluster):
    controller(scoped(namespace))
    put_apptask(admin, apptask("web", namespace, replicas=2, env=[{"name": "A", "value": "1"}],
                               ports=[{"name": "http", "containerPort": 80}]))
    deployment = poll_until(lambda: get_deployment(admin, namespace, "web"), timeout=30,
                            message="Deployment created")
    assert container(deployment)["image"] == "nginx:1.25"
    assert deployment["metadata"]["ownerReferences"][0]["controller"] is True
    status = poll_until(lambda: (s := status_of(admin, namespace, "web")).get("phase") == "Ready"
                        and s, timeout=60, message="AppTask Ready")
    assert status["readyReplicas"] == 2 and status["observedGeneration"] == 1
    assert condition(status, "Ready")["status"] == "True"

    put_apptask(admin, apptask("web", namespace, replicas=1, image="nginx:1.26"))
    poll_until(lambda: container(get_deployment(admin, namespace, "web"))["image"] == "nginx:1.26",
               timeout=30, message="image updated")
    poll_until(lambda: status_of(admin, namespace, "web").get("observedGeneration") == 2,
               timeout=30, message="status observed generation 2")

    admin.delete(APPTASKS.path(namespace, "web"))
    poll_until(lambda: get_deployment(admin, namespace, "web") is None, timeout=60,
               message="Deployment garbage-collected after its AppTask was deleted")


def test_a_foreground_deletion_of_an_apptask_waits_for_its_deployment(admin, controller,
                                                                      namespace, cluster):
    """The controller reference carries blockOwnerDeletion (as controller-runtime sets it): a
    foreground deletion keeps the AppTask, marked for deletion, until its Deployment is gone
    (held here by a finalizer of the test's), and the controller writes nothing meanwhile."""
    controller(scoped(namespace))
    put_apptask(admin, apptask("held", namespace, replicas=0))
    poll_until(lambda: status_of(admin, namespace, "held").get("phase") == "Ready", timeout=30,
               message="Ready")
    hold = {"metadata": {"finalizers": ["example.com/test-hold"]}}
    admin.patch(DEPLOYMENTS.path(namespace, "held"), hold, MERGE_PATCH)
    mark = cluster.audit.mark()
    admin.delete(APPTASKS.path(namespace, "held"), {"propagationPolicy": "Foreground"})
    poll_until(lambda: "deletionTimestamp" in get_deployment(admin, namespace, "held")["metadata"],
               timeout=60, message="the Deployment deleted first (garbage collection)")

    def gone() -> bool:
        return not any(t["metadata"]["name"] == "held"
                       for t in admin.list(APPTASKS.path(namespace))["items"])
    try:
        poll_until(gone, timeout=3, interval=0.2)
    except PollTimeout:
        pass
    else:
        raise AssertionError("the AppTask went before its Deployment")
    meta = get_apptask(admin, namespace, "held")["metadata"]
    assert "deletionTimestamp" in meta and "foregroundDeletion" in meta["finalizers"]
    admin.patch(DEPLOYMENTS.path(namespace, "held"), {"metadata": {"finalizers": None}},
                MERGE_PATCH)
    poll_until(gone, timeout=60, message="the AppTask deleted once its Deployment is gone")
    assert get_deployment(admin, namespace, "held") is None
    assert cluster.audit.select(mark, user=CONTROLLER, namespace=namespace, writes=True) == []


def test_dropped_field_is_removed_and_foreign_fields_survive(admin, controller, namespace):
    controller(scoped(namespace))
    env = [{"name": "KEEP", "value": "1"}, {"name": "DROP", "value": "2"}]
    put_apptask(admin, apptask("app", namespace, replicas=1, env=env))
    poll_until(lambda: (d := get_deployment(admin, namespace, "app"))
               and len(container(d)["env"]) == 2,
               timeout=30, message="both env vars applied")
    # Another manager sets fields the AppTask never specifies.
    admin.patch(DEPLOYMENTS.path(namespace, "app"),
                {"metadata": {"annotations": {"team": "payments"}},
                 "spec": {"minReadySeconds": 3}}, MERGE_PATCH, {"fieldManager": "other-tool"})

    put_apptask(admin, apptask("app", namespace, replicas=1, env=env[:1]))
    deployment = poll_until(
        lambda: (d := get_deployment(admin, namespace, "app"))
        and len(container(d)["env"]) == 1 and d,
        timeout=30, message="dropped env var removed")
    assert container(deployment)["env"] == [{"name": "KEEP", "value": "1"}]
    assert deployment["metadata"]["annotations"]["team"] == "payments"
    assert deployment["spec"]["minReadySeconds"] == 3


def test_omitted_replicas_are_left_to_others(admin, controller, namespace):
    process = controller(scoped(namespace, resync={"period": "1s", "jitter": 0}))
    put_apptask(admin, apptask("scaled", namespace))
    poll_until(lambda: get_deployment(admin, namespace, "scaled"), timeout=30, message="created")
    admin.patch(DEPLOYMENTS.path(namespace, "scaled", "scale"), {"spec": {"replicas": 3}},
                MERGE_PATCH, {"fieldManager": "hpa"})
    start = process.reconciles()
    poll_until(lambda: process.reconciles() >= start + 5, timeout=30,
               message="five resyncs of the AppTask")
    assert get_deployment(admin, namespace, "scaled")["spec"]["replicas"] == 3


def test_idle_resyncs_cost_no_requests(admin, controller, namespace, cluster):
    count = 50
    process = controller(scoped(namespace, resync={"period": "1s", "jitter": 0}))
    for i in range(count):
        put_apptask(admin, apptask(f"idle-{i}", namespace, replicas=0))
    poll_until(lambda: all(status_of(admin, namespace, f"idle-{i}").get("phase") == "Ready"
                           for i in range(count)), timeout=120, message="all AppTasks Ready")

    def resyncs(times: int) -> int:
        """Wait for `times` resyncs over every AppTask; return the audit mark taken before."""
        mark, start = cluster.audit.mark(), process.reconciles()
        poll_until(lambda: process.reconciles() >= start + times * count, timeout=60,
                   message=f"{times} resyncs over every AppTask")
        return mark

    def deferred() -> float:
        """Reconciles that left work for later: a retry, or a status write held back."""
        return sum(v for k, v in process.metrics().items()
                   if k.startswith("controller_runtime_reconcile_total{")
                   and ('result="error"' in k or 'result="requeue_after"' in k))

    def settled() -> bool:
        """Whether the controller kept still over two resyncs: a whole resync period without a
        request (Events are posted by their own thread, and the last ones can trail the last
        status write; one resync's reconciles take a few milliseconds, too short a window to
        see them), and no reconcile left work for later."""
        before = deferred()
        return cluster.audit.count(resyncs(2), user=CONTROLLER) == 0 and deferred() == before

    poll_until(settled, timeout=60, message="a resync period without controller requests")
    mark = resyncs(10)
    sent = cluster.audit.select(mark, user=CONTROLLER)
    assert not sent, f"requests during 10 idle resyncs: {described(sent)}"


def described(events: list) -> list[str]:
    """Audit events as `received verb target namespace/name code`, to say what was sent."""
    return [f"{e.received.time().isoformat()} {e.verb} {e.target} {e.namespace}/{e.name} "
            f"{e.code}" for e in events]


def test_one_update_is_one_apply_and_one_status_write(admin, controller, namespace, cluster):
    controller(scoped(namespace))
    put_apptask(admin, apptask("one", namespace, replicas=0))
    poll_until(lambda: status_of(admin, namespace, "one").get("phase") == "Ready", timeout=30,
               message="Ready")
    mark = cluster.audit.mark()
    put_apptask(admin, apptask("one", namespace, replicas=0, image="nginx:1.27"))
    poll_until(lambda: (s := status_of(admin, namespace, "one")).get("observedGeneration") == 2
               and s.get("phase") == "Ready", timeout=30, message="generation 2 Ready")

    def writes(resource: str, subresource: str | None = None) -> int:
        return cluster.audit.count(mark, user=CONTROLLER, writes=True, resource=resource,
                                   subresource=subresource, name="one")
    poll_until(lambda: writes("deployments") >= 1, timeout=10, message="apply audited")
    time.sleep(1.0)  # a late second status write would be counted
    assert writes("deployments") == 1
    assert writes("apptasks", "status") == 1
    requests = cluster.audit.select(mark, user=CONTROLLER)
    assert [e.resource for e in requests if e.resource != "events"] == ["deployments", "apptasks"]
    assert len([e for e in requests if e.verb not in ("list", "watch")]) <= 3  # + one Event


def requests_by_kind(events: list) -> collections.Counter:
    return collections.Counter(f"{e.verb} {e.target}" for e in events
                               if e.verb not in ("list", "watch"))


def test_a_creation_is_one_apply_one_status_write_and_one_event(admin, controller, namespace,
                                                                cluster):
    """No GET before a creation: the apply carries a create-only precondition, and the new
    Deployment is owned by the controller's Apply entry alone, with exactly its body's fields."""
    controller(scoped(namespace))
    mark = cluster.audit.mark()
    put_apptask(admin, apptask("fresh", namespace, replicas=0, env=[{"name": "A", "value": "1"}]))
    poll_until(lambda: status_of(admin, namespace, "fresh").get("phase") == "Ready", timeout=30,
               message="Ready")
    time.sleep(1.0)  # a late second status write would be counted
    requests = cluster.audit.select(mark, user=CONTROLLER, namespace=namespace)
    assert requests_by_kind(requests) == {"patch deployments": 1, "patch apptasks/status": 1,
                                          "create events": 1}
    deployment = admin.get(DEPLOYMENTS.path(namespace, "fresh"))
    ours = [m for m in deployment["metadata"]["managedFields"] if m["manager"] == "ssa-controller"]
    assert [m["operation"] for m in ours] == ["Apply"]
    body = desired.render(admin.get(APPTASKS.path(namespace, "fresh")))
    owned = set(fieldset.flatten({k: v for k, v in ours[0]["fieldsV1"].items()
                                  if k in fieldset.OWNED_ROOTS}))
    assert owned == set(fieldset.body_paths(body))


def test_a_rolling_update_coalesces_status_writes(admin, controller, namespace, cluster):
    """A 10-replica rolling update: a status write when it starts, one when it ends, and at most
    one per status min-interval (1 s) in between, while the ready count shown never lags the
    Deployment's by much more than that interval (sampled here every 50 ms)."""
    controller(scoped(namespace))
    put_apptask(admin, apptask("roll", namespace, replicas=10))
    poll_until(lambda: (s := status_of(admin, namespace, "roll")).get("phase") == "Ready"
               and s.get("readyReplicas") == 10, timeout=120, message="10 replicas Ready")
    time.sleep(1.5)
    mark, started = cluster.audit.mark(), time.monotonic()
    put_apptask(admin, apptask("roll", namespace, replicas=10, image="nginx:1.26"))
    worst = 0.0
    behind_since: float | None = None
    while True:
        deployment = admin.get(DEPLOYMENTS.path(namespace, "roll"))
        status = status_of(admin, namespace, "roll")
        now = time.monotonic()
        if deployment["status"].get("readyReplicas", 0) != status.get("readyReplicas"):
            behind_since = behind_since or now
            worst = max(worst, now - behind_since)
        else:
            behind_since = None
        if status.get("observedGeneration") == 2 and status.get("phase") == "Ready":
            break
        assert now - started < 120, "rollout finished"
        time.sleep(0.05)
    rollout = time.monotonic() - started
    time.sleep(1.5)  # a late write would be counted
    writes = cluster.audit.count(mark, user=CONTROLLER, writes=True, resource="apptasks",
                                 subresource="status", name="roll")
    assert writes <= 2 + int(rollout), (writes, rollout)
    assert worst <= 1.5, worst


REJECTED_WINDOW = 8.0
"""Seconds over which the retries of a refused AppTask are counted: with backoff 0.5 s doubling
to a 2 s cap about 4; retried on every 1 s resync as well, twice that."""


def test_rejected_spec_becomes_invalid_without_retry_storm(admin, controller, namespace, cluster):
    controller(scoped(namespace, backoff={"base": "0.5s", "cap": "2s"},
                      resync={"period": "1s", "jitter": 0}))
    duplicate_ports = [{"containerPort": 80, "protocol": "TCP"},
                       {"containerPort": 80, "protocol": "TCP", "name": "again"}]
    put_apptask(admin, apptask("bad", namespace, replicas=1, ports=duplicate_ports))
    put_apptask(admin, apptask("good", namespace, replicas=1))
    status = poll_until(lambda: (s := status_of(admin, namespace, "bad")).get("phase") == "Invalid"
                        and s, timeout=30, message="bad AppTask Invalid")
    synced = condition(status, "Synced")
    assert synced["status"] == "False" and synced["reason"] == "ApplyRejected"
    assert "duplicate entries" in synced["message"]
    poll_until(lambda: status_of(admin, namespace, "good").get("phase") == "Ready", timeout=60,
               message="the valid AppTask still converges")
    # A refusal is retried (it may not be about the spec), but only with the capped backoff:
    # resyncs do not add tries, and the unchanged status is not written again.
    mark = cluster.audit.mark()
    time.sleep(REJECTED_WINDOW)
    tries = cluster.audit.count(mark, user=CONTROLLER, resource="deployments", verb="patch",
                                name="bad")
    assert 2 <= tries <= 6, f"{tries} applies in {REJECTED_WINDOW}s"
    assert cluster.audit.count(mark, user=CONTROLLER, resource="apptasks", name="bad",
                               writes=True) == 0
    assert status_of(admin, namespace, "bad").get("phase") == "Invalid"


def test_validation_error_becomes_invalid(admin, controller, namespace):
    controller(scoped(namespace))
    ports = [{"name": "HTTP_X", "containerPort": 80}]
    put_apptask(admin, apptask("badname", namespace, ports=ports))
    status = poll_until(lambda: (s := status_of(admin, namespace, "badname")).get("phase")
                        == "Invalid" and s, timeout=30, message="Invalid")
    assert "Invalid value" in condition(status, "Synced")["message"]


def test_invalid_spec_is_reported_without_any_apply(admin, controller, namespace, cluster):
    controller(scoped(namespace))
    mark = cluster.audit.mark()
    put_apptask(admin, apptask("reserved", namespace, labels={"apptasks.example.com/name": "x"}))
    status = poll_until(lambda: (s := status_of(admin, namespace, "reserved")).get("phase")
                        == "Invalid" and s, timeout=30, message="Invalid")
    assert "spec.labels" in condition(status, "Synced")["message"]
    assert cluster.audit.count(mark, user=CONTROLLER, resource="deployments", writes=True) == 0


def test_failing_object_backs_off_then_converges(admin, controller, namespace, cluster):
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-deployments"},
             "spec": {"hard": {"count/deployments.apps": "0"}}}
    admin.create(f"/api/v1/namespaces/{namespace}/resourcequotas", quota)
    poll_until(lambda: admin.get(f"/api/v1/namespaces/{namespace}/resourcequotas/no-deployments")
               .get("status", {}).get("hard"), timeout=30, message="quota active")
    controller(scoped(namespace, backoff={"base": "0.2s", "factor": 2, "cap": "2s", "jitter": 0}))
    mark = cluster.audit.mark()
    put_apptask(admin, apptask("quota", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "quota").get("phase") == "Degraded",
               timeout=30, message="apply failure reported")

    def applies() -> list:
        return cluster.audit.select(mark, user=CONTROLLER, resource="deployments", verb="patch",
                                    name="quota")
    poll_until(lambda: len(applies()) >= 7, timeout=30, message="seven attempts")
    attempts = applies()
    gaps = [(b.timestamp - a.timestamp).total_seconds()
            for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(code == 403 for code in (e.code for e in attempts))
    # 0.2, 0.4, 0.8, 1.6, then capped at 2s (allow scheduling slack).
    assert gaps[:4] == sorted(gaps[:4]) and gaps[0] >= 0.15
    assert all(1.5 <= g <= 3.0 for g in gaps[4:6])

    admin.delete(f"/api/v1/namespaces/{namespace}/resourcequotas/no-deployments")
    poll_until(lambda: get_deployment(admin, namespace, "quota"), timeout=30,
               message="converges once the quota is gone")


def test_write_rate_stays_under_the_limit(admin, controller, namespace, cluster):
    qps, burst = 10, 5
    controller(scoped(namespace, rateLimit={"qps": qps, "burst": burst}, workers=4))
    mark = cluster.audit.mark()
    for i in range(40):
        put_apptask(admin, apptask(f"rate-{i}", namespace, replicas=0))
    poll_until(lambda: all(get_deployment(admin, namespace, f"rate-{i}") for i in range(40)),
               timeout=60, message="all Deployments created")
    writes = cluster.audit.select(mark, user=CONTROLLER, writes=True)
    per_second = collections.Counter(int(e.timestamp.timestamp()) for e in writes)
    assert len(writes) >= 40
    assert max(per_second.values()) <= qps + burst
    span = (writes[-1].timestamp - writes[0].timestamp).total_seconds()
    assert span >= (len(writes) - burst) / qps * 0.9


def test_apiserver_outage_is_survived(admin, controller, namespace, cluster):
    controller(scoped(namespace))
    put_apptask(admin, apptask("before", namespace, replicas=0))
    poll_until(lambda: get_deployment(admin, namespace, "before"), timeout=30, message="before")
    cluster.restart_apiserver()
    put_apptask(admin, apptask("after", namespace, replicas=0))
    poll_until(lambda: get_deployment(admin, namespace, "after"), timeout=60,
               message="an AppTask created after the outage converges")


def test_unknown_resource_access_is_refused_for_the_controller(cluster):
    """Guard for the tests above: the controller identity is not an admin."""
    kube = Kube(cluster.url, token=cluster.token(CONTROLLER), ca_file=str(cluster.ca_file))
    try:
        kube.list("/api/v1/secrets")
        raise AssertionError("the controller user can list secrets")
    except ApiError as exc:
        assert exc.status == 403


def test_run_once_makes_one_pass_and_exits(admin, namespace, cluster, tmp_path):
    for name in ("once-a", "once-b"):
        put_apptask(admin, apptask(name, namespace, replicas=0))
    config = tmp_path / "once.yaml"
    config.write_text(f"namespaces: [{namespace}]\nleaderElection: {{enabled: false}}\n")
    kubeconfig = cluster.write_kubeconfig(CONTROLLER, tmp_path / "kubeconfig")
    result = subprocess.run([sys.executable, "-m", "ssa_controller", "run", "--once", "--config",
                             str(config), "--kubeconfig", str(kubeconfig)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("once-a", "once-b"):
        assert get_deployment(admin, namespace, name) is not None
        assert status_of(admin, namespace, name).get("observedGeneration") == 1


def test_paused_apptask_is_left_alone(admin, controller, namespace, cluster):
    controller(scoped(namespace))
    put_apptask(admin, apptask("hold", namespace, replicas=0))
    poll_until(lambda: status_of(admin, namespace, "hold").get("phase") == "Ready", timeout=30)
    mark = cluster.audit.mark()
    put_apptask(admin, apptask("hold", namespace, replicas=0, image="nginx:1.27", paused=True))
    status = poll_until(lambda: (s := status_of(admin, namespace, "hold"))
                        .get("observedGeneration") == 2 and s, timeout=30, message="observed")
    synced = condition(status, "Synced")
    assert (status["phase"], synced["status"], synced["reason"]) == ("Paused", "False", "Paused")
    assert "does not match the spec" in synced["message"]  # the image waits
    assert container(get_deployment(admin, namespace, "hold"))["image"] == "nginx:1.25"
    assert cluster.audit.count(mark, user=CONTROLLER, resource="deployments", writes=True) == 0

    put_apptask(admin, apptask("hold", namespace, replicas=0, image="nginx:1.27"))
    poll_until(lambda: container(get_deployment(admin, namespace, "hold"))["image"] == "nginx:1.27",
               timeout=30, message="applied once unpaused")
    poll_until(lambda: status_of(admin, namespace, "hold").get("phase") == "Ready", timeout=30)
    assert condition(status_of(admin, namespace, "hold"), "Synced")["reason"] == "Synced"
