"""The failure modes this project exists to prevent, not covered elsewhere: a status write that
re-triggers reconciles, watching what the controller does not own, a cache that keeps
managedFields, and leaks under churn. (Fights: test_dryrun_and_fights.py; backoff and rate
limits: test_controller.py; leader election: test_deploy.py.)"""

from __future__ import annotations

import json
import threading
from typing import Any

from helpers import (
    CONTROLLER,
    apptask,
    condition,
    get_apptask,
    get_deployment,
    process_usage,
    put_apptask,
    scoped,
    status_of,
    usage_back_to,
)

from ssa_controller.apptask.desired import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH
from ssa_controller.controller import Controller
from ssa_controller.envtest import poll_until
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.serving.metrics import Metrics
from ssa_controller.settings.config import parse_config
from ssa_lab.scenarios import unrelated


def idle(process) -> bool:
    """Whether the controller's queue is empty and no worker holds a key."""
    return (process.metric("workqueue_depth{") == 0
            and process.metric("controller_runtime_active_workers{") == 0)


def barrier(admin, process, namespace: str, name: str) -> None:
    """Create a paused AppTask and wait until its one reconcile is done and counted.

    A paused AppTask costs exactly one reconcile (its ADDED event: the reconciler writes the
    Paused status and returns); its status write is a status-only change, which enqueues
    nothing. It travels on the same AppTask watch as any change made before it, so with one
    worker (FIFO queue) every key those changes enqueued has been reconciled before it."""
    put_apptask(admin, apptask(name, namespace, paused=True))
    poll_until(lambda: condition(status_of(admin, namespace, name), "Synced").get("reason")
               == "Paused", timeout=30, message=f"{name}: Paused status written")
    # Its status shows while its reconcile is still running; the count follows its return.
    poll_until(lambda: idle(process), timeout=30, message=f"{name}: reconcile counted")


def test_status_writes_do_not_retrigger_reconciles(admin, controller, namespace, cluster):
    # One worker: keys are reconciled in the order their events arrived. No resync meanwhile.
    process = controller(scoped(namespace, workers=1, resync={"period": "1h"}))
    put_apptask(admin, apptask("steady", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "steady").get("phase") == "Ready", timeout=60)
    # Converged means the Deployment controller is done with it too (its later status updates
    # are Deployment events, which rightly enqueue "steady") ...
    poll_until(lambda: deployment_settled(get_deployment(admin, namespace, "steady")), timeout=60,
               message="steady: Deployment rollout complete")
    # ... and the controller has seen that last update: the Deployment watch delivers events in
    # order, so once a labelled Deployment created now is cached, so is every earlier event.
    admin.create(DEPLOYMENTS.path(namespace), fence_deployment(namespace, "fence"))
    poll_until(lambda: process.metric('ssa_controller_cached_objects{resource="deployments"}')
               == 2, timeout=30, message="fence Deployment cached")
    barrier(admin, process, namespace, "gate")  # everything enqueued so far is reconciled
    reconciles = process.reconciles()
    mark = cluster.audit.mark()
    before = get_apptask(admin, namespace, "steady")

    # A status-only change the controller would not correct: the Ready condition's
    # lastTransitionTime (status.compute keeps it while the condition's status is unchanged,
    # so the status the controller wants stays equal to the live one).
    conditions = [{**c, "lastTransitionTime": "2001-01-01T00:00:00Z"} if c["type"] == "Ready"
                  else c for c in before["status"]["conditions"]]
    after_status = admin.patch(APPTASKS.path(namespace, "steady", "status"),
                               {"status": {"conditions": conditions}}, MERGE_PATCH)
    # A resourceVersion-only change: an annotation (no new generation).
    after_meta = admin.patch(APPTASKS.path(namespace, "steady"),
                             {"metadata": {"annotations": {"example.com/touched": "yes"}}},
                             MERGE_PATCH)
    versions = {before["metadata"]["resourceVersion"], after_status["metadata"]["resourceVersion"],
                after_meta["metadata"]["resourceVersion"]}
    assert len(versions) == 3, "both changes must reach the watch as MODIFIED events"
    assert after_meta["metadata"]["generation"] == before["metadata"]["generation"]

    barrier(admin, process, namespace, "barrier")
    print(f"reconciles after the changes and the barrier: {process.reconciles() - reconciles}")
    # Exactly the barrier's one reconcile: none for "steady". (With every AppTask event
    # enqueued, "steady" alone costs one or two more: the changes may collapse in the queue.)
    assert process.reconciles() - reconciles == 1
    assert cluster.audit.count(mark, user=CONTROLLER, name="steady") == 0
    assert condition(status_of(admin, namespace, "steady"), "Ready")["lastTransitionTime"] \
        == "2001-01-01T00:00:00Z"


def deployment_settled(deployment: dict[str, Any] | None) -> bool:
    """Whether the Deployment controller has finished the rollout (no status update to come)."""
    if not deployment:
        return False
    spec, status = deployment["spec"], deployment.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    return (status.get("observedGeneration") == deployment["metadata"]["generation"]
            and all(status.get(k, 0) == spec["replicas"]
                    for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"))
            and conditions.get("Available", {}).get("status") == "True"
            and conditions.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable")


def fence_deployment(namespace: str, name: str) -> dict[str, Any]:
    """A Deployment with the managed-by label (so the controller caches it) and no owner (so
    its events enqueue nothing)."""
    deployment: dict[str, Any] = unrelated(namespace, name)
    deployment["metadata"]["labels"] = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    return deployment


def test_only_owned_deployments_are_watched(admin, controller, namespace, cluster):
    mark = cluster.audit.mark()
    process = controller(scoped(namespace))
    for i in range(30):
        admin.create(DEPLOYMENTS.path(namespace), unrelated(namespace, f"other-{i}"))
    put_apptask(admin, apptask("mine", namespace, replicas=0))
    poll_until(lambda: status_of(admin, namespace, "mine").get("phase") == "Ready", timeout=60)
    assert process.metric('ssa_controller_cached_objects{resource="deployments"}') == 1
    assert process.metric('ssa_controller_cached_objects{resource="apptasks"}') == 1
    reads = cluster.audit.select(mark, user=CONTROLLER, resource="deployments",
                                 verbs=("list", "watch"))
    assert reads and all("labelSelector=app.kubernetes.io%2Fmanaged-by" in e.request_uri
                         for e in reads)
    assert cluster.audit.count(mark, user=CONTROLLER, name="other-0") == 0


class NoEvents:
    """An EventSink that drops everything (no worker runs in the cache test)."""

    def record(self, *args: object) -> None:
        pass


def api_size(obj: dict[str, Any]) -> int:
    """Bytes of an object's API fields as JSON (a cache's own bookkeeping keys left out)."""
    return len(json.dumps({k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec", "status")
                           if k in obj}))


CACHED_OBJECTS = 20
OTHER_MANAGERS = 12
CACHED_BYTES_PER_OBJECT = 3000
"""A bound on the API fields of a cached Deployment of this test (the ownership summary the
Deployment cache keeps beside them is left out). Measured on v1.20.2: 2.0 KB cached; with its
managedFields (3.3 KB: the creator, kube-controller-manager and 12 annotating tools) 5.3 KB."""


def test_cache_drops_managed_fields(admin, namespace, cluster):
    """The controller's own caches, built by its own watchers and transforms, against Deployments
    whose managedFields (many field managers) are most of their size."""
    kube = Kube.from_kubeconfig(str(cluster.kubeconfig), user_agent="tests-cache")
    cached = Controller(parse_config({"namespaces": [namespace]}), kube, NoEvents(), Metrics())
    stop = threading.Event()
    threads = cached.start_watches(stop)
    try:
        assert cached.wait_synced(30), "caches synced"
        names = [f"big-{i}" for i in range(CACHED_OBJECTS)]
        put_apptask(admin, apptask("task", namespace))  # with the test's own managedFields
        notes = [f"tool-{m}.example.com/note" for m in range(OTHER_MANAGERS)]
        for name in names:
            admin.create(DEPLOYMENTS.path(namespace), fence_deployment(namespace, name))
            for m, note in enumerate(notes):
                admin.patch(DEPLOYMENTS.path(namespace, name),
                            {"metadata": {"annotations": {note: "x"}}},
                            MERGE_PATCH, {"fieldManager": f"tool-{m}"})
        store = cached.deployments

        def all_cached() -> bool:
            objects = [store.get(ObjectKey(namespace, name)) for name in names]
            return all(o is not None and set(notes) <= set(o["metadata"].get("annotations", {}))
                       for o in objects)

        poll_until(all_cached, timeout=60, message="every Deployment cached with every change")
        live = [get_deployment(admin, namespace, name) for name in names]
        managed = [len(json.dumps(d["metadata"]["managedFields"])) for d in live]
        assert min(api_size(d) for d in live) > 1.5 * CACHED_BYTES_PER_OBJECT, \
            "with their managedFields the test's objects are well over the bound"

        keys = store.keys()
        assert len(store) == len(keys) == CACHED_OBJECTS
        objects = [store.get(key) for key in keys]
        total = sum(api_size(o) for o in objects)
        print(f"cached: {total / len(objects):.0f} bytes per Deployment; live "
              f"{sum(map(api_size, live)) / len(live):.0f}, of which managedFields "
              f"{sum(managed) / len(managed):.0f}")
        carrying = [key for key, o in zip(keys, objects, strict=True)
                    if "managedFields" in o["metadata"]]
        assert carrying == [], f"cached objects keep managedFields: {carrying[:3]}..."
        assert total <= CACHED_OBJECTS * CACHED_BYTES_PER_OBJECT, (
            f"{total} bytes cached for {CACHED_OBJECTS} Deployments "
            f"(their managedFields alone: {sum(managed)} bytes)")
        task = cached.apptasks.get(ObjectKey(namespace, "task"))  # the AppTask cache, the same way
        assert task is not None and "managedFields" not in task["metadata"]
    finally:
        stop.set()
        cached.stop_watches()
        for thread in threads:
            thread.join(10)
        kube.close()
    assert not any(thread.is_alive() for thread in threads)


def test_churn_leaks_nothing(admin, controller, namespace):
    process = controller(scoped(namespace, workers=4))
    batch = 60

    def churn(round_: int) -> None:
        for i in range(batch):
            put_apptask(admin, apptask(f"churn-{i}", namespace, replicas=0,
                                       env=[{"name": "ROUND", "value": str(round_)}]))
        poll_until(lambda: process.metric('ssa_controller_cached_objects{resource="deployments"}')
                   == batch, timeout=120, message=f"round {round_}: all Deployments cached")
        for i in range(batch):
            admin.delete(APPTASKS.path(namespace, f"churn-{i}"))
        poll_until(lambda: process.metric('ssa_controller_cached_objects{resource="apptasks"}') == 0
                   and process.metric('ssa_controller_cached_objects{resource="deployments"}') == 0,
                   timeout=120, message=f"round {round_}: caches empty after deletion")

    churn(0)
    rss0, threads0, fds0 = process_usage(process.proc.pid)
    for round_ in range(1, 4):
        churn(round_)
    rss, _, _ = usage_back_to(process.proc.pid, threads=threads0, fds=fds0 + 2)
    assert rss - rss0 < 8 * 1024, f"RSS grew by {rss - rss0} KiB over three churn rounds"
    assert get_deployment(admin, namespace, "churn-0") is None
