"""The controller as it is deployed, proven against the real API server: two processes with
leader election (one writer at a time, SIGKILL and SIGTERM hand-overs), metrics and probes,
least-privilege RBAC rule by rule, and manifests/ applied with the machine's kubectl."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from helpers import (
    CONTROLLER_NAMESPACE,
    MANIFESTS,
    TEST_USERS,
    allowed,
    apptask,
    assert_one_writer_at_a_time,
    condition,
    container,
    controller_writes,
    failure_without,
    get_deployment,
    get_service,
    manifest_roles,
    put_apptask,
    rbac_docs,
    rbac_objects,
    rbac_path,
    rule_triples,
    status_of,
    unowned_deployment,
)
from metrics_scrape import SECURE, metrics_reader, samples, scrape, user_subject

from ssa_controller.apptask import desired
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import DEPLOYMENTS, LEASES, SERVICES
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.runner import EVENT_SOURCE
from ssa_controller.settings.config import LEADER_JITTER_FACTOR

KUBECTL = "/usr/bin/kubectl"

LEASE_DURATION, RETRY_PERIOD = 3.0, 0.5
FAST_LEASE = {"leaseDuration": "3s", "renewDeadline": "2s", "retryPeriod": "500ms"}
RETRY_WAIT = (1 + LEADER_JITTER_FACTOR) * RETRY_PERIOD
"""The longest wait between two acquire attempts (client-go's jittered retry period)."""
SLACK = 1.0
"""Seconds allowed for process scheduling and request latency in timing bounds."""
STEP_TIMEOUT = 10.0
"""Each step of the least-privilege scenario normally takes well under a second."""
EVENTS_PATH = "/apis/events.k8s.io/v1/namespaces/{}/events"

Process = Any
"""conftest.ControllerProcess (conftest modules are not importable by name)."""


# --------------------------------------------------------------------------- helpers


def elected(namespace: str, lease: str, **timing: str) -> dict[str, Any]:
    """A config restricted to `namespace`, with fast leader election on Lease `lease`."""
    return {"namespaces": [namespace],
            "leaderElection": {"enabled": True, "namespace": CONTROLLER_NAMESPACE,
                               "leaseName": lease, **FAST_LEASE, **timing}}


def lease_spec(admin: Kube, lease: str) -> dict[str, Any]:
    try:
        return admin.get(LEASES.path(CONTROLLER_NAMESPACE, lease)).get("spec") or {}
    except ApiError as exc:
        if exc.status == 404:
            return {}
        raise


def leading(process: Process, lease: str) -> float | None:
    """leader_election_master_status for `lease` (None: not published or not answering)."""
    try:
        return process.metrics().get(f'leader_election_master_status{{name="{lease}"}}')
    except urllib3.exceptions.HTTPError:
        return None


def identity_or_none(process: Process) -> str | None:
    """The leader election identity the process logged when it became leader, if it did."""
    found = re.search(r"became leader of lease \S+ as (\S+)", process.log())
    return found.group(1) if found else None


def identity(process: Process) -> str:
    found = identity_or_none(process)
    assert found, f"{process.user}: no 'became leader' line in its log"
    return found


def poll_until_or_none(fn: Callable[[], Any], timeout: float) -> Any:
    """fn()'s first truthy value within `timeout`, or None: for asserting that nothing happens."""
    try:
        return poll_until(fn, timeout=timeout, interval=0.1)
    except TimeoutError:
        return None


def leader_and_follower(pair: list[Process], lease: str) -> tuple[Process, Process]:
    def one_leads() -> tuple[Process, Process] | None:
        status = [leading(p, lease) for p in pair]
        if status == [1.0, 0.0]:
            return pair[0], pair[1]
        if status == [0.0, 1.0]:
            return pair[1], pair[0]
        return None
    return poll_until(one_leads, timeout=15, message="exactly one of two controllers leading")


def start_pair(start: Callable[..., Process], config: dict[str, Any]) -> list[Process]:
    """Two controllers with the same config as users "controller" and "controller-2"."""
    pair = [start(config, user=user, ready=False) for user in TEST_USERS]
    for process in pair:
        process.wait_ready()
    return pair


def assert_handed_over(cluster: ControlPlane, mark: int, namespace: str, lease: str,
                       old: Process, new: Process) -> None:
    """Since `mark`, `old` wrote (namespace objects and the Lease), then `new`: every write by
    `old` ended before the first by `new` began, and `new` applied a Deployment."""
    writes = controller_writes(cluster.audit, mark, namespace, lease)
    assert assert_one_writer_at_a_time(writes) == [old.user, new.user]
    assert any(e.resource == "deployments" and e.user == new.user for e in writes)


def converged(admin: Kube, namespace: str, name: str, image: str, generation: int) -> bool:
    deployment = get_deployment(admin, namespace, name)
    return (deployment is not None and container(deployment)["image"] == image
            and status_of(admin, namespace, name).get("observedGeneration") == generation)


def get_ok(process: Process, port: int, path: str) -> tuple[int, str]:
    try:
        return process.get(port, path)
    except urllib3.exceptions.HTTPError as exc:
        return 0, str(exc)


# --------------------------------------------------------------------------- leader election


def test_two_processes_exactly_one_reconciles(admin, controller, namespace, cluster, lease_name):
    mark = cluster.audit.mark()
    pair = start_pair(controller, elected(namespace, lease_name))
    leader, follower = leader_and_follower(pair, lease_name)
    assert lease_spec(admin, lease_name)["holderIdentity"] == identity(leader)

    for i in range(3):
        put_apptask(admin, apptask(f"app-{i}", namespace, replicas=1))
    put_apptask(admin, apptask("app-0", namespace, replicas=1, image="nginx:1.26"))
    poll_until(lambda: converged(admin, namespace, "app-0", "nginx:1.26", 2)
               and all(converged(admin, namespace, f"app-{i}", "nginx:1.25", 1) for i in (1, 2)),
               timeout=30, message="three AppTasks converged")
    # The follower keeps waiting through renewals for longer than a lease duration.
    first = lease_spec(admin, lease_name)
    poll_until(lambda: (s := lease_spec(admin, lease_name))["renewTime"] != first["renewTime"]
               and s, timeout=10, message="a renewal by the leader")
    assert not poll_until_or_none(lambda: leading(follower, lease_name) == 1.0,
                                  LEASE_DURATION + RETRY_WAIT)
    spec = lease_spec(admin, lease_name)
    assert spec["holderIdentity"] == identity(leader) and spec["leaseTransitions"] == 0

    writes = controller_writes(cluster.audit, mark, namespace)
    deployment_writes = [e for e in writes if e.resource == "deployments"]
    status_writes = [e for e in writes if (e.resource, e.subresource) == ("apptasks", "status")]
    assert len(deployment_writes) >= 4 and status_writes
    assert {e.user for e in writes} == {leader.user}, \
        f"writes from more than the leader: {cluster.audit.summary(mark, namespace=namespace)}"
    # The follower wrote nothing at all (a lost race to create the Lease is refused with 409).
    assert not [e for e in cluster.audit.select(mark, user=follower.user, writes=True)
                if e.code is not None and e.code < 400]
    assert leader.reconciles() > 0 and follower.reconciles() == 0



def test_sigkill_of_the_leader_hands_over_after_the_lease_expires(
        admin, controller, namespace, cluster, lease_name):
    mark = cluster.audit.mark()
    pair = start_pair(controller, elected(namespace, lease_name))
    leader, follower = leader_and_follower(pair, lease_name)
    old_identity, new_identity = identity(leader), None
    put_apptask(admin, apptask("before", namespace, replicas=1))
    poll_until(lambda: converged(admin, namespace, "before", "nginx:1.25", 1), timeout=30,
               message="converged before the kill")

    killed = time.monotonic()
    assert leader.stop(signal.SIGKILL) == -signal.SIGKILL
    # Changes made while nobody leads: the new leader must converge them.
    put_apptask(admin, apptask("before", namespace, replicas=1, image="nginx:1.26"))
    put_apptask(admin, apptask("after", namespace, replicas=1))
    poll_until(lambda: leading(follower, lease_name) == 1.0, timeout=LEASE_DURATION + 15,
               interval=0.02, message="the follower to take over")
    waited = time.monotonic() - killed
    # The follower judges expiry from when it saw the last renewal (at most one retry period
    # before the kill, seen up to one jittered retry period later) and retries every jittered
    # retry period: it cannot take over before the lease ran out, and does within lease
    # duration plus retry periods.
    bound = LEASE_DURATION + 2 * RETRY_WAIT + SLACK
    assert LEASE_DURATION - RETRY_PERIOD - 0.3 <= waited <= bound, \
        f"took over after {waited:.2f}s, expected {LEASE_DURATION - RETRY_PERIOD:.1f}..{bound:.1f}s"
    new_identity = identity(follower)
    spec = lease_spec(admin, lease_name)
    assert spec["holderIdentity"] == new_identity != old_identity
    assert spec["leaseTransitions"] == 1

    poll_until(lambda: converged(admin, namespace, "before", "nginx:1.26", 2)
               and converged(admin, namespace, "after", "nginx:1.25", 1), timeout=20,
               message="the new leader converges the changes made after the kill")
    assert_handed_over(cluster, mark, namespace, lease_name, leader, follower)


def test_sigterm_releases_the_lease_and_hands_over_within_seconds(
        admin, controller, namespace, cluster, lease_name):
    lease_duration = 15.0
    mark = cluster.audit.mark()
    pair = start_pair(controller, elected(namespace, lease_name, leaseDuration="15s",
                                          renewDeadline="10s", retryPeriod="500ms"))
    leader, follower = leader_and_follower(pair, lease_name)
    put_apptask(admin, apptask("app", namespace, replicas=1))
    poll_until(lambda: converged(admin, namespace, "app", "nginx:1.25", 1), timeout=30,
               message="converged before SIGTERM")

    signalled = time.monotonic()
    assert leader.stop(signal.SIGTERM) == 0, leader.log()[-3000:]
    exited = time.monotonic() - signalled
    assert exited < 5.0, f"SIGTERM took {exited:.1f}s to exit"
    assert "released leader lease" in leader.log()
    assert lease_spec(admin, lease_name)["holderIdentity"] in ("", identity_or_none(follower))
    put_apptask(admin, apptask("app", namespace, replicas=1, image="nginx:1.26"))

    poll_until(lambda: leading(follower, lease_name) == 1.0, timeout=lease_duration,
               interval=0.02, message="the follower to take over")
    handover = time.monotonic() - signalled
    bound = exited + RETRY_WAIT + SLACK
    assert handover <= bound < lease_duration / 2, \
        f"hand-over took {handover:.2f}s (exit {exited:.2f}s), expected <= {bound:.2f}s"
    spec = lease_spec(admin, lease_name)
    assert spec["holderIdentity"] == identity(follower) and spec["leaseTransitions"] == 1
    poll_until(lambda: converged(admin, namespace, "app", "nginx:1.26", 2), timeout=20,
               message="the new leader converges the change made during the hand-over")
    # In-flight reconciles of the old leader finish before it releases the lease; all its
    # writes, since it started, precede the new leader's.
    assert_handed_over(cluster, mark, namespace, lease_name, leader, follower)



# --------------------------------------------------------------------------- observability

METRIC_FAMILIES = (
    "controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
    "controller_runtime_reconcile_time_seconds", "controller_runtime_max_concurrent_reconciles",
    "controller_runtime_active_workers", "workqueue_depth", "workqueue_adds_total",
    "workqueue_retries_total", "workqueue_queue_duration_seconds",
    "workqueue_work_duration_seconds", "leader_election_master_status",
)


def test_metrics_and_probes_answer_and_count_a_reconcile(admin, controller, namespace,
                                                         lease_name):
    pair = start_pair(controller, elected(namespace, lease_name))
    leader, follower = leader_and_follower(pair, lease_name)
    for process in pair:  # the standby is ready too: its caches are synced
        assert process.get(process.health_port, "/healthz") == (200, "ok")
        assert process.get(process.health_port, "/readyz") == (200, "ok")
        status, text = process.get(process.metrics_port, "/metrics")
        assert status == 200
        missing = [name for name in METRIC_FAMILIES if f"# TYPE {name} " not in text]
        assert not missing, f"{process.user}: metric families missing: {missing}"
    assert leading(leader, lease_name) == 1.0 and leading(follower, lease_name) == 0.0

    reconciles = 'controller_runtime_reconcile_total{controller="apptask",result="success"}'
    applied = 'ssa_controller_applies_total{outcome="applied"}'
    adds = 'workqueue_adds_total{name="apptask"}'
    before = leader.metrics()
    put_apptask(admin, apptask("counted", namespace, replicas=1))
    poll_until(lambda: converged(admin, namespace, "counted", "nginx:1.25", 1), timeout=30,
               message="AppTask converged")

    def grown() -> dict[str, float] | None:
        after = leader.metrics()
        ok = (after.get(reconciles, 0) > before.get(reconciles, 0)
              and after.get(applied, 0) >= before.get(applied, 0) + 1
              and after.get(adds, 0) > before.get(adds, 0))
        return after if ok else None
    after = poll_until(grown, timeout=10, message="reconcile, apply and queue counters grown")
    assert after['controller_runtime_max_concurrent_reconciles{controller="apptask"}'] == 2
    assert after.get('controller_runtime_reconcile_errors_total{controller="apptask"}') == 0
    assert any(k.startswith("rest_client_requests_total{") and 'code="200"' in k
               and v > 0 for k, v in after.items())
    assert after[f'leader_election_master_status{{name="{lease_name}"}}'] == 1
    standby = follower.metrics()
    assert standby[f'leader_election_master_status{{name="{lease_name}"}}'] == 0
    assert follower.reconciles() == 0 and standby.get(applied, 0) == 0
    assert follower.get(follower.health_port, "/readyz") == (200, "ok")


# --------------------------------------------------------------------------- least privilege


SERVICE_SPEC = {"ports": [{"name": "http", "port": 80}]}


def unowned_service(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name,
                                                               "namespace": namespace},
            "spec": {"ports": [{"port": 80}], "selector": {"app": name}}}


class WholeJob:
    """One compact run that needs every permission: caches sync, a metrics-reader scrapes the
    secure /metrics (a TokenReview and a SubjectAccessReview), the lease is taken and
    renewed, a Deployment is created and updated, an existing unowned one is read and refused
    (its selector is immutable) and another one adopted (adoptExisting), a Service is created,
    created again once deleted (its watch), deleted once the spec drops it, and an existing
    unowned one is read and refused, status is written, an Event is posted and a repeat of it
    is patched into its series, and a clean shutdown releases the lease.

    Each step raises AssertionError naming the capability that failed; every poll also fails
    at once if the controller process exits, or if its status reports a failed apply."""

    def __init__(self, admin: Kube, start: Callable[..., Process], namespace: str,
                 lease: str, reader_token: str) -> None:
        self.admin, self.start, self.namespace, self.lease = admin, start, namespace, lease
        self.reader_token = reader_token
        self.process: Process = None

    def step(self, what: str, check: Callable[[], Any], timeout: float = STEP_TIMEOUT) -> Any:
        def probe() -> Any:
            code = self.process.proc.poll()
            if code is not None:
                raise AssertionError(f"{what}: the controller exited with code {code}:\n"
                                     f"{self.process.log()[-1500:]}")
            try:
                return check()
            except AssertionError as exc:  # a failure the controller reported: fail at once
                raise AssertionError(f"{what}: {exc}") from None
        return poll_until(probe, timeout=timeout, interval=0.1, message=f"{what}",
                          ignore=(ApiError, urllib3.exceptions.HTTPError))

    def metrics(self) -> dict[str, float]:
        """The controller's metrics, scraped over HTTPS with the metrics-reader's token."""
        status, text = scrape(self.process.metrics_port, self.reader_token)
        if status != 200:
            raise AssertionError(f"the scrape was answered {status} {text.strip()}")
        return samples(text)

    def deployment(self, image: str) -> dict[str, Any] | None:
        status = status_of(self.admin, self.namespace, "app")
        synced = condition(status, "Synced")
        if synced.get("status") == "False":
            raise AssertionError(f"Deployment not applied: status says {synced.get('reason')}: "
                                 f"{synced.get('message')}")
        found = get_deployment(self.admin, self.namespace, "app")
        return found if found and container(found)["image"] == image else None

    def refused(self, name: str) -> bool:
        """Whether the AppTask `name` reports its Deployment as one it cannot take (the
        controller read it after its creating apply was refused, and the server refused the
        adoption's dry run: the selector is immutable)."""
        synced = condition(status_of(self.admin, self.namespace, name), "Synced")
        if synced.get("status") != "False":
            return False
        if synced.get("reason") != "ApplyRejected" or "selector" not in synced.get("message"):
            raise AssertionError(f"status says {synced.get('reason')}: {synced.get('message')}")
        return True

    def adopted(self, name: str) -> bool:
        """Whether the Deployment `name` is controlled by its AppTask now (an adoption changes
        its owner references: where OwnerReferencesPermissionEnforcement runs, that takes
        `delete` on it)."""
        synced = condition(status_of(self.admin, self.namespace, name), "Synced")
        if synced.get("status") == "False":
            raise AssertionError(f"status says {synced.get('reason')}: {synced.get('message')}")
        found = get_deployment(self.admin, self.namespace, name)
        return found is not None and desired.controller_ref(found) is not None

    def service(self, name: str, other_than: str = "") -> dict[str, Any] | None:
        """The Service `name` when its AppTask controls it (and its uid is not `other_than`)."""
        synced = condition(status_of(self.admin, self.namespace, name), "Synced")
        if synced.get("status") == "False":
            raise AssertionError(f"status says {synced.get('reason')}: {synced.get('message')}")
        found = get_service(self.admin, self.namespace, name)
        return found if found is not None and desired.controller_ref(found) is not None \
            and found["metadata"]["uid"] != other_than else None

    def service_gone(self, name: str) -> bool:
        """Whether the Service `name` is gone, its AppTask's status reporting no failure."""
        synced = condition(status_of(self.admin, self.namespace, name), "Synced")
        if synced.get("status") == "False":
            raise AssertionError(f"status says {synced.get('reason')}: {synced.get('message')}")
        return get_service(self.admin, self.namespace, name) is None

    def service_refused(self, name: str) -> bool:
        """Whether the AppTask `name` reports the Service of its name as one it never adopts
        (read after its creating apply was refused)."""
        synced = condition(status_of(self.admin, self.namespace, name), "Synced")
        if synced.get("status") != "False":
            return False
        if synced.get("reason") != "ServiceExists":
            raise AssertionError(f"status says {synced.get('reason')}: {synced.get('message')}")
        return True

    def event(self, note: str) -> dict[str, Any] | None:
        items = self.admin.list(EVENTS_PATH.format(self.namespace))["items"]
        return next((e for e in items if e.get("reportingController") == EVENT_SOURCE
                     and e["regarding"].get("name") == "app" and e.get("note") == note), None)

    def run(self) -> None:
        admin, namespace, lease = self.admin, self.namespace, self.lease
        self.process = process = self.start(
            {**elected(namespace, lease), **SECURE, "apply": {"adoptExisting": True}},
            ready=False)
        self.step("caches synced (/readyz)",
                  lambda: get_ok(process, process.health_port, "/readyz")[0] == 200)
        self.step("metrics scraped (TokenReview, SubjectAccessReview)", self.metrics)
        leader_status = f'leader_election_master_status{{name="{lease}"}}'
        self.step("lease taken",
                  lambda: self.metrics().get(leader_status) == 1.0
                  and lease_spec(admin, lease).get("holderIdentity") == identity_or_none(process))
        holder = identity(process)

        put_apptask(admin, apptask("app", namespace, replicas=1))
        self.step("Deployment created", lambda: self.deployment("nginx:1.25"))
        self.step("status written",
                  lambda: status_of(admin, namespace, "app").get("observedGeneration") == 1)
        self.step("Event posted", lambda: self.event("Deployment app created"))
        self.step("Deployment status observed (AppTask Ready)",
                  lambda: (s := status_of(admin, namespace, "app")).get("phase") == "Ready"
                  and s.get("readyReplicas") == 1)

        admin.create(DEPLOYMENTS.path(namespace),
                     unowned_deployment(namespace, "taken", {"app": "taken"}))
        put_apptask(admin, apptask("taken", namespace))
        self.step("an existing unowned Deployment read and refused (ApplyRejected)",
                  lambda: self.refused("taken"))
        admin.create(DEPLOYMENTS.path(namespace),
                     unowned_deployment(namespace, "kept", {desired.NAME_LABEL: "kept"}),
                     {"fieldManager": "kubectl-create"})
        put_apptask(admin, apptask("kept", namespace))
        self.step("an existing Deployment adopted", lambda: self.adopted("kept"))

        put_apptask(admin, apptask("app", namespace, replicas=1, service=SERVICE_SPEC))
        created = self.step("Service created", lambda: self.service("app"))
        admin.delete(SERVICES.path(namespace, "app"))
        self.step("a deleted Service created again (Services watched)", lambda: self.service(
            "app", other_than=created["metadata"]["uid"]))
        admin.create(SERVICES.path(namespace), unowned_service(namespace, "served"))
        put_apptask(admin, apptask("served", namespace, service=SERVICE_SPEC))
        self.step("an existing unowned Service read and refused (ServiceExists)",
                  lambda: self.service_refused("served"))

        put_apptask(admin, apptask("app", namespace, replicas=1, image="nginx:1.26"))
        self.step("Service deleted (spec.service removed)", lambda: self.service_gone("app"))
        self.step("Deployment updated", lambda: self.deployment("nginx:1.26"))
        self.step("status updated",
                  lambda: status_of(admin, namespace, "app").get("observedGeneration") == 3)
        self.step("Event posted", lambda: self.event("Deployment app configured"))
        put_apptask(admin, apptask("app", namespace, replicas=1, image="nginx:1.27"))
        self.step("Deployment updated", lambda: self.deployment("nginx:1.27"))
        self.step("repeated Event counted in its series",
                  lambda: ((self.event("Deployment app configured") or {}).get("series") or {})
                  .get("count", 0) >= 2)

        acquired = lease_spec(admin, lease)
        self.step("lease renewed",
                  lambda: (s := lease_spec(admin, lease))["renewTime"] != acquired["renewTime"]
                  and s["holderIdentity"] == holder)
        code = process.stop(signal.SIGTERM)
        assert code == 0, f"clean shutdown: exit code {code}:\n{process.log()[-1500:]}"
        assert lease_spec(admin, lease).get("holderIdentity") == "", "lease released at shutdown"


def test_rbac_names_every_group_resource_and_verb():
    roles = manifest_roles()
    assert {(role["kind"], name) for name, role in roles.items()} == {
        ("ClusterRole", "ssa-controller"), ("ClusterRole", "ssa-controller-metrics-auth"),
        ("Role", "ssa-controller-leader-election")}
    for name, role in roles.items():
        for rule in role["rules"]:
            assert not rule.get("nonResourceURLs") and not rule.get("resourceNames"), rule
            for key in ("apiGroups", "resources", "verbs"):
                assert rule.get(key), f"{name}: rule without {key}: {rule}"
                assert not any("*" in item for item in rule[key]), f"{name}: wildcard in {rule}"
    # Leases only in the controller's own namespace; nothing else there.
    role = roles["ssa-controller-leader-election"]
    assert role["metadata"]["namespace"] == CONTROLLER_NAMESPACE
    assert {(g, r) for _, g, r, _ in rule_triples() if r == "leases"} == {
        ("coordination.k8s.io", "leases")}
    assert all(roles[n]["kind"] == "Role" for n, _, r, _ in rule_triples() if r == "leases")
    assert all(r == "leases" for n, _, r, _ in rule_triples() if roles[n]["kind"] == "Role")
    # Secure metrics: the two reviews, nothing more.
    assert {(g, r, v) for n, g, r, v in rule_triples() if n == "ssa-controller-metrics-auth"} == {
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create")}
    # Scrapers' role: one non-resource rule, bound to nobody by manifests/rbac.yaml.
    reader = [d for d in rbac_docs() if d["metadata"]["name"] == "ssa-controller-metrics-reader"]
    assert [d["kind"] for d in reader] == ["ClusterRole"]
    assert reader[0]["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


@pytest.fixture
def reader_token(admin: Kube, cluster: ControlPlane) -> Iterator[str]:
    """The token of a user bound to manifests' metrics-reader (WholeJob scrapes with it)."""
    with metrics_reader(admin, user_subject("alice")):
        yield cluster.token("alice")


def test_manifest_rbac_is_enough_for_the_whole_job(admin, controller, namespace, cluster,
                                                   lease_name, reader_token):
    mark = cluster.audit.mark()
    WholeJob(admin, controller, namespace, lease_name, reader_token).run()
    refused = [e for e in cluster.audit.select(mark, user="controller") if e.code == 403]
    assert not refused, f"requests refused: {[(e.verb, e.target) for e in refused]}"


EXPECTED_FAILURE = {
    ("example.com", "apptasks", "list"): "caches synced",
    ("example.com", "apptasks", "watch"): "Deployment created",
    ("example.com", "apptasks/status", "patch"): "status written",
    ("example.com", "apptasks/finalizers", "update"): "Deployment created",
    ("apps", "deployments", "get"): "an existing unowned Deployment read and refused",
    ("apps", "deployments", "delete"): "an existing Deployment adopted",
    ("apps", "deployments", "list"): "caches synced",
    ("apps", "deployments", "watch"): "Deployment status observed",
    ("apps", "deployments", "create"): "Deployment created",
    ("apps", "deployments", "patch"): "Deployment created",
    ("", "services", "get"): "Service created",  # read before it is created
    ("", "services", "list"): "caches synced",
    ("", "services", "watch"): "a deleted Service created again",
    ("", "services", "create"): "Service created",
    ("", "services", "patch"): "Service created",
    ("", "services", "delete"): "Service deleted",
    ("events.k8s.io", "events", "create"): "Event posted",
    ("events.k8s.io", "events", "patch"): "repeated Event counted",
    ("coordination.k8s.io", "leases", "get"): "lease taken",
    ("coordination.k8s.io", "leases", "create"): "lease taken",
    ("coordination.k8s.io", "leases", "update"): "exited with code 1",
    ("authentication.k8s.io", "tokenreviews", "create"): "metrics scraped",
    ("authorization.k8s.io", "subjectaccessreviews", "create"): "metrics scraped",
}
"""Where the scenario is expected to fail without each permission (rules not listed here
only need to make it fail somewhere)."""


@pytest.mark.parametrize("name,group,resource,verb", rule_triples(),
                         ids=[f"{n}:{r}.{g or 'core'}:{v}" for n, g, r, v in rule_triples()])
def test_every_rule_is_needed(admin, controller, namespace, cluster, lease_name, reader_token,
                              name, group, resource, verb):
    role = manifest_roles()[name]
    job = WholeJob(admin, controller, namespace, lease_name, reader_token)
    failure = failure_without(
        admin, role, (group, resource, verb), role["metadata"].get("namespace") or namespace,
        job.run, lambda: job.process is not None and job.process.stop(signal.SIGKILL),
        f"the controller did its whole job without {verb} on {resource} ({group}): the rule "
        "is unnecessary, remove it from manifests/rbac.yaml")
    expected = EXPECTED_FAILURE.get((group, resource, verb))
    assert expected is None or expected in failure, \
        f"without {verb} {resource}: expected '{expected}' to fail, got: {failure}"


# --------------------------------------------------------------------------- manifests


def kubectl(cluster: ControlPlane, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "--cache-dir",
                           str(cache), *args], capture_output=True, text=True, timeout=120)


def test_kubectl_applies_the_manifests_and_prints_the_columns(admin, controller, namespace,
                                                              cluster, tmp_path):
    created = {
        "Deployment": f"/apis/apps/v1/namespaces/{CONTROLLER_NAMESPACE}/deployments/ssa-controller",
        "ConfigMap": f"/api/v1/namespaces/{CONTROLLER_NAMESPACE}/configmaps/ssa-controller-config",
        "ServiceAccount":
            f"/api/v1/namespaces/{CONTROLLER_NAMESPACE}/serviceaccounts/ssa-controller",
        "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/"
                         f"{CONTROLLER_NAMESPACE}/networkpolicies/ssa-controller",
    }
    existed = set()
    for kind, path in created.items():
        try:
            admin.get(path)
            existed.add(kind)
        except ApiError as exc:
            if exc.status != 404:
                raise
    cache = tmp_path / "kube-cache"
    try:
        # --force-conflicts: the session's fixture already applied the CRD and RBAC (with the
        # test users added to the bindings) under other field managers.
        applied = kubectl(cluster, cache, "apply", "--server-side", "--force-conflicts",
                          "-f", str(MANIFESTS))
        assert applied.returncode == 0, applied.stderr
        for needle in ("namespace/ssa-controller-system",
                       "customresourcedefinition.apiextensions.k8s.io/apptasks.example.com",
                       "serviceaccount/ssa-controller", "clusterrole.rbac.authorization.k8s.io/",
                       "role.rbac.authorization.k8s.io/", "clusterrolebinding.", "rolebinding.",
                       "configmap/ssa-controller-config", "deployment.apps/ssa-controller",
                       "networkpolicy.networking.k8s.io/ssa-controller"):
            assert needle in applied.stdout, f"{needle} not applied:\n{applied.stdout}"
        kustomized = kubectl(cluster, cache, "apply", "--server-side", "--force-conflicts",
                             "-k", str(MANIFESTS))
        assert kustomized.returncode == 0, kustomized.stderr
        assert "deployment.apps/ssa-controller serverside-applied" in kustomized.stdout
        deployment = admin.get(created["Deployment"])
        assert deployment["spec"]["replicas"] == 2
        assert container(deployment)["image"] == "ssa-controller:0.1.0"
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ssa-controller"
    finally:
        for obj in rbac_objects():  # kubectl replaced the bindings' subjects: restore them
            admin.apply(rbac_path(obj), obj, field_manager="tests", force=True)
        for kind, path in created.items():
            if kind not in existed:
                try:
                    admin.delete(path)
                except ApiError as exc:
                    if exc.status != 404:
                        raise
        for user in TEST_USERS:
            poll_until(lambda u=user: allowed(admin, u, CONTROLLER_NAMESPACE,
                                              "coordination.k8s.io", "leases", "get"),
                       timeout=10, message=f"{user} bound again")

    controller({"namespaces": [namespace]})
    put_apptask(admin, apptask("web", namespace, replicas=1))
    poll_until(lambda: (s := status_of(admin, namespace, "web")).get("phase") == "Ready"
               and s.get("readyReplicas") == 1, timeout=30, message="AppTask Ready")
    for resource in ("apptasks", "at"):
        shown = kubectl(cluster, cache, "get", resource, "-n", namespace)
        assert shown.returncode == 0, shown.stderr
        header, *rows = shown.stdout.splitlines()
        assert header.split() == ["NAME", "IMAGE", "DESIRED", "READY", "SYNCED", "PHASE", "AGE"]
        assert len(rows) == 1
        name, image, desired, ready, synced, phase, age = rows[0].split()
        assert (name, image, desired, ready, synced, phase) == (
            "web", "nginx:1.25", "1", "1", "True", "Ready")
        assert re.fullmatch(r"\d+[smhd]\w*", age), age
    wide = kubectl(cluster, cache, "get", "at", "web", "-n", namespace, "-o", "wide")
    header, row = wide.stdout.splitlines()
    assert (header.split()[-1], row.split()[-1]) == ("OBSERVED", "1"), wide.stdout
