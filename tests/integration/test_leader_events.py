"""Leader election, Events, metrics and probes against the real API server (control plane)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import EVENTS, LEASES
from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.runtime.events import EventRecorder
from ssa_controller.runtime.leader import LeaderElector, default_identity
from ssa_controller.serving import metricsserver
from ssa_controller.serving.health import HealthServer
from ssa_controller.serving.metrics import Metrics

LEASE = "ssa-controller"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 2.0, 1.5, 0.3
AGENT = "ssa-controller-test"


def kube(plane: ControlPlane, agent: str = AGENT, **kwargs: Any) -> Kube:
    return Kube(plane.url, token=plane.admin_token, ca_file=str(plane.ca_file),
                user_agent=agent, **kwargs)


class Replica:
    """One controller replica's leader election, running in its own thread."""

    def __init__(self, plane: ControlPlane, namespace: str, metrics: Metrics | None = None) -> None:
        self.identity = default_identity()
        self.agent = f"{AGENT}/{self.identity}"
        observer = metrics.request_observer(urlsplit(plane.url).netloc) if metrics else None
        self.kube = kube(plane, self.agent, observer=observer)
        self.started = threading.Event()
        self.lost = threading.Event()
        self.stop = threading.Event()
        self.elector = LeaderElector(
            self.kube, namespace=namespace, name=LEASE, identity=self.identity,
            lease_duration=LEASE_DURATION, renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD, on_started_leading=self.started.set,
            on_stopped_leading=self.lost.set, metrics=metrics)
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        """Stop renewing without releasing: to the others, like a replica killed by SIGKILL."""
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def close(self) -> None:
        if self.thread.is_alive():
            self.halt()
        self.kube.close()


@pytest.fixture
def replicas(control_plane: ControlPlane, namespace: str) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.close()


def lease_spec(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    admin = kube(plane)
    try:
        return admin.get(LEASES.path(namespace, LEASE))["spec"]
    finally:
        admin.close()


def leader_and_follower(pair: list[Replica]) -> tuple[Replica, Replica]:
    poll_until(lambda: any(r.started.is_set() for r in pair), timeout=15,
               message="a replica to become leader")
    first, second = pair
    return (first, second) if first.started.is_set() else (second, first)


def test_exactly_one_of_two_replicas_leads(control_plane: ControlPlane, namespace: str,
                                           replicas: list[Replica]) -> None:
    mark = control_plane.audit.mark()
    replicas += [Replica(control_plane, namespace), Replica(control_plane, namespace)]
    leader, follower = leader_and_follower(replicas)
    assert lease_spec(control_plane, namespace)["holderIdentity"] == leader.identity
    # Several renewals happen while the follower keeps waiting.
    spec = poll_until(lambda: (s := lease_spec(control_plane, namespace))["renewTime"]
                      != s["acquireTime"] and s, timeout=10, message="a renewal")
    assert spec["holderIdentity"] == leader.identity and spec["leaseTransitions"] == 0
    assert not follower.started.wait(LEASE_DURATION + RETRY_PERIOD)
    assert leader.elector.is_leader and not follower.elector.is_leader
    assert follower.elector.holder == leader.identity

    def successful_lease_writes(agent: str) -> int:
        return sum(1 for e in control_plane.audit.select(
            mark, resource="leases", namespace=namespace, user_agent=agent, writes=True)
            if e.code is not None and e.code < 300)

    poll_until(lambda: successful_lease_writes(leader.agent) >= 3, timeout=10,
               message="the leader's renewals in the audit log")
    assert successful_lease_writes(follower.agent) == 0


def test_a_leader_that_stops_renewing_is_replaced_after_the_lease_expires(
        control_plane: ControlPlane, namespace: str, replicas: list[Replica]) -> None:
    replicas += [Replica(control_plane, namespace), Replica(control_plane, namespace)]
    leader, follower = leader_and_follower(replicas)
    leader.halt()
    halted = time.monotonic()
    poll_until(follower.started.is_set, timeout=15, message="the follower to take over")
    waited = time.monotonic() - halted
    # Not before the lease ran out (minus the one retry period the last renewal may predate
    # the halt), and within lease duration plus a jittered retry period (and some slack).
    assert LEASE_DURATION - RETRY_PERIOD - 0.1 <= waited <= LEASE_DURATION + 3 * RETRY_PERIOD + 1
    spec = lease_spec(control_plane, namespace)
    assert spec["holderIdentity"] == follower.identity and spec["leaseTransitions"] == 1
    assert not leader.lost.is_set()


def test_release_hands_over_within_about_one_retry_period(
        control_plane: ControlPlane, namespace: str, replicas: list[Replica]) -> None:
    replicas += [Replica(control_plane, namespace), Replica(control_plane, namespace)]
    leader, follower = leader_and_follower(replicas)
    leader.halt()
    released = time.monotonic()
    assert leader.elector.release()
    assert not leader.elector.is_leader
    poll_until(follower.started.is_set, timeout=10, message="the follower to take over")
    assert time.monotonic() - released < (1 + 1.2) * RETRY_PERIOD + 0.5 < LEASE_DURATION
    spec = lease_spec(control_plane, namespace)
    assert spec["holderIdentity"] == follower.identity and spec["leaseTransitions"] == 1
    assert spec["leaseDurationSeconds"] == 2


def test_a_stolen_lease_is_noticed_and_leadership_lost(
        control_plane: ControlPlane, namespace: str, replicas: list[Replica]) -> None:
    replicas.append(Replica(control_plane, namespace))
    (leader,) = replicas
    poll_until(leader.started.is_set, timeout=15, message="leadership")
    admin = kube(control_plane, "thief")
    try:
        lease = admin.get(LEASES.path(namespace, LEASE))
        lease["spec"].update(holderIdentity="thief", leaseDurationSeconds=60)
        admin.update(LEASES.path(namespace, LEASE), lease)
    finally:
        admin.close()
    poll_until(leader.lost.is_set, timeout=RENEW_DEADLINE + 5, message="leadership lost")
    assert not leader.elector.is_leader
    assert lease_spec(control_plane, namespace)["holderIdentity"] == "thief"


def test_release_without_ever_leading_changes_nothing(
        control_plane: ControlPlane, namespace: str, replicas: list[Replica]) -> None:
    replicas += [Replica(control_plane, namespace), Replica(control_plane, namespace)]
    leader, follower = leader_and_follower(replicas)
    follower.halt()
    assert follower.elector.release()
    assert lease_spec(control_plane, namespace)["holderIdentity"] == leader.identity
    assert not leader.lost.is_set()


def test_events_are_created_and_repeats_become_a_series(
        control_plane: ControlPlane, namespace: str) -> None:
    admin = kube(control_plane)
    subject = admin.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "subject"}})
    metrics = Metrics()
    mark = control_plane.audit.mark()
    recorder = EventRecorder(kube(control_plane, f"{AGENT}/events"), instance="replica-1",
                             qps=0.1, burst=3, metrics=metrics)
    recorder.start()
    try:
        recorder.record(subject, "Normal", "Applied", "Apply", "applied deployment subject")
        recorder.record(subject, "Normal", "Applied", "Apply", "applied deployment subject")
        recorder.record(subject, "Warning", "Conflict", "Apply", "x" * 5000)
        for _ in range(20):  # a hot loop: the per-object bucket (burst 3) is already empty
            recorder.record(subject, "Warning", "Fight", "Apply", "fight")
    finally:
        recorder.stop(timeout=10)

    events = admin.list(EVENTS.path(namespace))["items"]
    by_reason = {event["reason"]: event for event in events}
    assert sorted(by_reason) == ["Applied", "Conflict"] and len(events) == 2
    applied = by_reason["Applied"]
    assert applied["series"]["count"] == 2
    assert applied["reportingController"] == "example.com/ssa-controller"
    assert applied["reportingInstance"] == "replica-1"
    assert applied["regarding"]["uid"] == subject["metadata"]["uid"]
    assert applied["regarding"]["kind"] == "ConfigMap"
    assert applied["metadata"]["name"].startswith("subject.")
    assert len(by_reason["Conflict"]["note"]) == 1024
    writes = control_plane.audit.select(mark, resource="events", namespace=namespace,
                                        user_agent=f"{AGENT}/events", writes=True)
    assert sorted(event.verb for event in writes) == ["create", "create", "patch"]
    text = metrics.exposition().decode()
    assert 'ssa_controller_events_total{reason="Applied",type="Normal"} 2.0' in text
    assert "ssa_controller_events_dropped_total 20.0" in text
    admin.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_and_probes_report_leadership(control_plane: ControlPlane, namespace: str,
                                              replicas: list[Replica]) -> None:
    metrics = Metrics()
    replica = Replica(control_plane, namespace, metrics)
    replicas.append(replica)
    server = metricsserver.serve(metrics.registry, "127.0.0.1", free_port())
    assert server is not None
    health = HealthServer("127.0.0.1", free_port(),
                          healthz={"leader-election": replica.elector.healthy},
                          readyz={"leader": lambda: replica.elector.is_leader})
    health.start()
    try:
        poll_until(replica.started.is_set, timeout=15, message="the replica to lead")
        poll_until(lambda: http_get(health.port, "/readyz") == (200, "ok"), timeout=5,
                   message="readyz ok")
        assert http_get(health.port, "/healthz?verbose") == (
            200, "[+]leader-election ok\nhealthz check passed\n")
        status, text = http_get(server.port, "/metrics")
        assert status == 200
        assert f'leader_election_master_status{{name="{LEASE}"}} 1.0' in text
        host = urlsplit(control_plane.url).netloc
        renewal = f'rest_client_requests_total{{code="200",host="{host}",method="GET"}}'
        # the Lease is read with 200 from the first renewal on (RETRY_PERIOD after it was
        # created): a scrape may come before it
        poll_until(lambda: renewal in http_get(server.port, "/metrics")[1], timeout=10,
                   message="a Lease renewal counted in rest_client_requests_total")
        _, text = http_get(server.port, "/metrics")
        assert f'rest_client_requests_total{{code="200",host="{host}",method="PUT"}}' in text \
            or f'rest_client_requests_total{{code="201",host="{host}",method="POST"}}' in text

        replica.halt()
        assert replica.elector.release()
        assert http_get(health.port, "/readyz")[0] == 500
        _, text = http_get(server.port, "/metrics")
        assert f'leader_election_master_status{{name="{LEASE}"}} 0.0' in text
    finally:
        health.stop()
        server.stop()
