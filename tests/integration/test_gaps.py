"""Gaps in what the controller sees (issue 9, items 2 and 5), against a control plane of its own.

- A watch gap the watch cannot bridge: the controller is paused (SIGSTOP) while AppTasks are
  created, changed and deleted and Deployments deleted by hand, its watches end meanwhile, and
  etcd is compacted past its resourceVersion. kube-apiserver runs with --watch-cache=false, so
  the resumed watches answer 410 Gone at once (its watch cache would keep serving the old
  resourceVersion) and the controller must relist: its caches end equal to the server's state,
  the deleted AppTasks are forgotten (their Deployments are garbage collected and never
  re-created) and every change made during the gap converges.
- A namespace deleted under 20 converged AppTasks: the server refuses to create anything in it
  (403, cause NamespaceTerminating) while it is torn down. The controller must not storm it with
  re-creation attempts, their retries, status writes and Warning Events.

The module's `cluster` fixture (overriding the session one for these tests) is that control
plane, with kube-controller-manager for garbage collection and namespace deletion.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from helpers import (
    CONTROLLER,
    CONTROLLER_NAMESPACE,
    apply_rbac,
    apptask,
    process_usage,
    put_apptask,
    rbac_objects,
    scoped,
    usage_back_to,
)

from ssa_controller import crds
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import Assets, ControlPlane, poll_until
from ssa_controller.envtest.controlplane import CONTROLLERS

NAMESPACE_TASKS = 20
REQUESTS_PER_TASK_IN_TEARDOWN = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, assets: Assets) -> Iterator[ControlPlane]:
    """A control plane without kube-apiserver's watch cache, CRD and RBAC installed."""
    with ControlPlane(tmp_path_factory.mktemp("gaps"), controller_manager=True, assets=assets,
                      watch_cache=False, controllers=CONTROLLERS + ",-namespace") as plane:
        admin = plane.client()
        try:
            crds.install(admin)
            admin.create("/api/v1/namespaces", {"metadata": {"name": CONTROLLER_NAMESPACE}})
            apply_rbac(admin, rbac_objects())
        finally:
            admin.close()
        yield plane


@pytest.fixture
def new_namespace(cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"{request.node.name.replace('_', '-')[:40].strip('-')}-{os.getpid() % 10000}"
    admin = cluster.client()
    admin.create("/api/v1/namespaces", {"metadata": {"name": name}})
    try:
        yield name
    finally:
        try:
            admin.delete(f"/api/v1/namespaces/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
        admin.close()


def cached(process, resource: str) -> float:
    return process.metric(f'ssa_controller_cached_objects{{resource="{resource}"}}')


def names(kube: Kube, path: str) -> set[str]:
    return {o["metadata"]["name"] for o in kube.list(path).get("items", [])}


def phase_and_image(kube: Kube, namespace: str) -> dict[str, tuple[str | None, int, int]]:
    """name -> (phase, observedGeneration, generation) of every AppTask."""
    return {o["metadata"]["name"]: (o.get("status", {}).get("phase"),
                                    o.get("status", {}).get("observedGeneration", 0),
                                    o["metadata"]["generation"])
            for o in kube.list(APPTASKS.path(namespace)).get("items", [])}


def all_ready(kube: Kube, namespace: str, count: int) -> bool:
    states = phase_and_image(kube, namespace)
    return len(states) == count and all(
        phase == "Ready" and observed == generation for phase, observed, generation in
        states.values())


def images(kube: Kube, namespace: str) -> dict[str, str]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in kube.list(DEPLOYMENTS.path(namespace)).get("items", [])}


# ------------------------------------------------------------------------------------ item 2


def test_a_watch_gap_past_compaction_relists_and_converges(admin, controller, new_namespace,
                                                           cluster):
    ns = new_namespace
    # Short server-side watch timeouts (2-4 s), so that the paused controller's watches end
    # while it is stopped; a resync period longer than the test, so only the relist can tell
    # the controller what happened meanwhile.
    process = controller(scoped(ns, workers=2, resync={"period": "1h"},
                                timeouts={"watch": "2s"}))
    keep = [f"keep-{i}" for i in range(6)]
    change = [f"change-{i}" for i in range(4)]
    gone = [f"gone-{i}" for i in range(4)]
    for name in keep + change + gone:
        put_apptask(admin, apptask(name, ns, replicas=0))
    total = len(keep + change + gone)
    poll_until(lambda: all_ready(admin, ns, total), timeout=90, message="all AppTasks Ready")
    poll_until(lambda: cached(process, "apptasks") == total
               and cached(process, "deployments") == total, timeout=30,
               message="caches hold every object")
    relists = process.metric("ssa_controller_watch_relists_total{")

    os.kill(process.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(5)  # every watch of the controller times out on the server meanwhile
        mark = cluster.audit.mark()
        for name in gone:
            admin.delete(APPTASKS.path(ns, name))
        for name in change:
            put_apptask(admin, apptask(name, ns, replicas=0, image="nginx:1.26"))
        born = [f"born-{i}" for i in range(3)]
        for name in born:
            put_apptask(admin, apptask(name, ns, replicas=0))
        admin.delete(DEPLOYMENTS.path(ns, keep[0]))  # a Deployment deleted by hand
        # Garbage collection removes the deleted AppTasks' Deployments while the controller
        # sleeps, so its Deployment cache misses those deletions too.
        poll_until(lambda: not names(admin, DEPLOYMENTS.path(ns)) & set(gone + keep[:1]),
                   timeout=60, message="deleted AppTasks' Deployments garbage collected")
        compacted = cluster.compact()
    finally:
        os.kill(process.proc.pid, signal.SIGCONT)
    resumed = time.monotonic()

    expected = set(keep + change + born)
    changed = {(name, "nginx:1.26") for name in change}

    def converged() -> bool:
        # keep-0's status still says Ready: its Deployment, deleted by hand, counts separately
        return (all_ready(admin, ns, len(expected))
                and names(admin, DEPLOYMENTS.path(ns)) == expected
                and set(images(admin, ns).items()) >= changed)

    poll_until(converged, timeout=60, message="every change made during the gap converged")
    print(f"etcd compacted at revision {compacted}; every change converged "
          f"{time.monotonic() - resumed:.1f}s after the controller resumed")
    poll_until(lambda: cached(process, "apptasks") == len(expected)
               and cached(process, "deployments") == len(expected), timeout=30,
               message="caches equal to the server's state")
    assert process.metric('ssa_controller_watch_relists_total{resource="apptasks"}') >= 1
    assert process.metric('ssa_controller_watch_relists_total{resource="deployments"}') >= 1
    assert process.metric("ssa_controller_watch_relists_total{") > relists
    time.sleep(2)  # anything still queued about the deleted AppTasks would act now
    writes = [e for e in cluster.audit.select(mark, user=CONTROLLER, namespace=ns, writes=True)
              if e.resource == "deployments" and e.name in gone]
    assert writes == [], f"Deployments of deleted AppTasks written: {writes}"
    assert not names(admin, DEPLOYMENTS.path(ns)) & set(gone)


# ------------------------------------------------------------------------------------ item 5


def test_deleting_a_namespace_costs_at_most_two_requests_per_apptask(admin, controller, cluster):
    ns = "teardown"
    admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    process = controller(scoped(ns, workers=2))
    pid = process.proc.pid
    tasks = [f"task-{i}" for i in range(NAMESPACE_TASKS)]
    rss_before = process_usage(pid)[0]
    for name in tasks:
        put_apptask(admin, apptask(name, ns, replicas=0))
    poll_until(lambda: all_ready(admin, ns, NAMESPACE_TASKS), timeout=90,
               message="all AppTasks Ready")
    poll_until(lambda: cached(process, "deployments") == NAMESPACE_TASKS, timeout=30,
               message="all Deployments cached")
    rss_full, threads_full, fds_full = process_usage(pid)  # its working set of threads, fds

    mark = cluster.audit.mark()
    started = time.monotonic()
    admin.delete(f"/api/v1/namespaces/{ns}")  # Terminating: nothing new may be created in it
    # The namespace controller's work (it is left out of this control plane), in the order that
    # is hardest for the controller: the Deployments go first while the AppTasks stay, not
    # even being deleted, for a while (its order of resources varies from run to run).
    background = {"propagationPolicy": "Background"}
    admin.delete(DEPLOYMENTS.path(ns), background)
    poll_until(lambda: cached(process, "deployments") == 0, timeout=30,
               message="Deployment deletions seen")
    time.sleep(3)
    admin.delete(APPTASKS.path(ns), background)
    admin.delete(f"/apis/apps/v1/namespaces/{ns}/replicasets", background)
    namespace = admin.get(f"/api/v1/namespaces/{ns}")
    namespace["spec"]["finalizers"] = []
    admin.update(f"/api/v1/namespaces/{ns}/finalize", namespace)

    def namespace_gone() -> bool:
        try:
            admin.get(f"/api/v1/namespaces/{ns}")
        except ApiError as exc:
            return exc.status == 404
        return False

    poll_until(namespace_gone, timeout=60, message=f"namespace {ns} deleted")
    teardown = time.monotonic() - started
    poll_until(lambda: cached(process, "apptasks") == 0 and cached(process, "deployments") == 0,
               timeout=30, message="caches emptied")
    time.sleep(3)  # retries of refused attempts would come now
    requests = [e for e in cluster.audit.select(mark, user=CONTROLLER)
                if e.verb not in ("watch", "list")]
    summary = Counter((e.verb, e.target, e.code) for e in requests)
    print(f"namespace teardown: {teardown:.1f}s, {len(requests)} controller requests "
          f"({len(requests) / NAMESPACE_TASKS:.2f} per AppTask): {dict(summary)}")
    assert len(requests) <= REQUESTS_PER_TASK_IN_TEARDOWN * NAMESPACE_TASKS, summary
    events = [e for e in requests if e.resource == "events"]
    assert events == [], f"Events posted into a terminating namespace: {len(events)}"
    status_writes = [e for e in requests if e.subresource == "status"]
    assert status_writes == [], f"{len(status_writes)} status writes during the teardown"
    rss, threads, fds = usage_back_to(pid, threads=threads_full, fds=fds_full)
    print(f"RSS {rss_before} KiB before, {rss_full} with {NAMESPACE_TASKS} AppTasks, {rss} after;"
          f" threads {threads_full}->{threads}, fds {fds_full}->{fds}")
    assert rss - rss_full < 2 * 1024, "RSS grew during the teardown"
    assert rss - rss_before < 4 * 1024, "RSS not back near its level before the AppTasks"

    # The name is free again: a namespace re-created under it is served at once.
    admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    put_apptask(admin, apptask("again", ns, replicas=0))
    poll_until(lambda: all_ready(admin, ns, 1), timeout=30,
               message="an AppTask in the re-created namespace converges")
