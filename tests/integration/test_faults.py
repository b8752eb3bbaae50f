"""Reliability under faults (issue 9, items 1, 3 and 4; issue 24, items 1, 3, 6 and the readiness
part of 7), against the real API server.

The controller runs as a separate process; faults come from kube-apiserver itself (killed and
started again mid-burst) or from `faultproxy.FaultProxy` between the two (silent stalls, stalled
writes, throttling, server errors, resets, TLS handshakes held, expired continue tokens,
create-only applies refused, credentials refused). Tests assert on outcomes: objects converged,
the proxy's record of requests, the audit log, the controller's metrics. Fixed waits are fault
windows only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faultproxy import FaultProxy, RequestRecord
from helpers import (
    CONTROLLER,
    CONTROLLER_NAMESPACE,
    TEST_USERS,
    apptask,
    assert_one_writer_at_a_time,
    container,
    controller_writes,
    get_deployment,
    put_apptask,
    scoped,
    status_of,
)

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, LEASES
from ssa_controller.client.watch import WATCH_STALLED
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import ControlPlane, PollTimeout, poll_until
from ssa_controller.runtime import watcher
from ssa_controller.runtime.store import Writer

DEFAULT_TIMEOUTS: dict[str, Any] = {"timeouts": {}}
"""The product's default timeouts (the `controller` fixture pins a long watch timeout)."""
STALL_BOUND = 60.0
"""A change made during a silent stall converges within this, with default settings."""
JITTER = 0.5
"""Seconds by which a request's arrival at the proxy may lag its release by the write limiter
(a new TLS connection after a reset, a busy machine)."""
RENEW_DEADLINE = 10.0
"""leaderElection.renewDeadline's default (client-go's)."""
EXIT_SLACK = 1.5
"""Seconds a leader whose renew deadline passed may take to be seen gone (a loaded machine)."""
RELIST_WINDOW = 16.0
"""Seconds of watches answered 410 Gone, over which relists are counted: the watch backoff
(0.5 s doubling, times [0.5, 1)) allows 2-4 in that time."""


@pytest.fixture
def proxy(cluster: ControlPlane) -> Iterator[FaultProxy]:
    with FaultProxy(cluster.url, cert_file=cluster.cert_dir / "apiserver.crt",
                    key_file=cluster.cert_dir / "apiserver.key",
                    ca_file=cluster.ca_file) as running:
        yield running


def converged(admin: Kube, namespace: str, image: str, count: int) -> bool:
    """All `count` AppTasks observed at their generation, their Deployments on `image`."""
    tasks = admin.list(APPTASKS.path(namespace))["items"]
    deployments = {d["metadata"]["name"]: d
                   for d in admin.list(DEPLOYMENTS.path(namespace))["items"]}
    return len(tasks) == count and all(
        t.get("status", {}).get("observedGeneration") == t["metadata"]["generation"]
        and t["metadata"]["name"] in deployments
        and container(deployments[t["metadata"]["name"]])["image"] == image
        for t in tasks)


def timed(check: Callable[[], object], timeout: float, message: str) -> float:
    """Poll `check` until it holds; return how long that took."""
    started = time.monotonic()
    poll_until(check, timeout=timeout, interval=0.2, message=message)
    return time.monotonic() - started


def retry_gaps_after_429(records: list[RequestRecord], since: float
                          ) -> list[tuple[float, str, str]]:
    """For each injected 429 after `since` on AppTasks or Deployments, the time until the same
    request (method and path: an object's apply or status write, a collection's list or watch)
    was sent again, with the method and path. (Events of all objects share one path.)"""
    gaps = []
    for i, record in enumerate(records):
        if record.outcome != 429 or record.at < since or "/events" in record.path:
            continue
        again = next((r.at for r in records[i + 1:]
                      if (r.method, r.path) == (record.method, record.path)), None)
        if again is not None:
            gaps.append((again - record.at, record.method, record.path))
    return gaps


def most_in_window(times: list[float], width: float) -> int:
    """The most of `times` that fall in any window [t, t + width)."""
    ordered = sorted(times)
    most, end = 0, 0
    for i, start in enumerate(ordered):
        while end < len(ordered) and ordered[end] < start + width:
            end += 1
        most = max(most, end - i)
    return most


def test_the_fault_proxy_passes_injects_stalls_and_resets(proxy, cluster):
    """Guard for the tests below: each fault does what it says, through real TLS."""
    def client() -> Kube:
        return Kube(proxy.url, token=cluster.admin_token, ca_file=str(cluster.ca_file),
                    request_timeout=2.0)
    kube = client()
    try:
        assert kube.get("/version")["major"] == "1"
        with kube.watch(APPTASKS.path(), {"timeoutSeconds": 30}, timeout=40):
            pass  # a streamed (chunked) answer passes too
        proxy.inject([429], retry_after=2)
        with pytest.raises(ApiError) as caught:
            kube.get("/version")
        assert (caught.value.status, caught.value.retry_after) == (429, 2.0)
        proxy.pass_through()
        kube.get("/version")
        assert proxy.stall() >= 1
        with pytest.raises(ApiError) as stalled:
            kube.get("/version")  # the pooled connection: stalled
        assert stalled.value.status == 0
        fresh = client()
        assert fresh.get("/version")["major"] == "1"  # a new connection works
        proxy.inject(["reset"])
        with pytest.raises(ApiError) as reset:
            fresh.get("/version")
        assert reset.value.status == 0
        fresh.close()
        assert proxy.outcomes(injected=True) == {429: 1, "reset": 1}
        assert proxy.outcomes()["stalled"] == 1
        # kube: one connection closed with its watch, one left after the stall; fresh: one
        assert (proxy.accepted, proxy.refused) == (3, 0)
    finally:
        kube.close()


def test_a_change_during_a_silent_stall_converges_within_a_minute(
        admin, controller, namespace, proxy):
    """Item 3: every connection stalls (TCP alive, nothing moves); default settings."""
    process = controller(scoped(namespace, **DEFAULT_TIMEOUTS), server_url=proxy.url)
    put_apptask(admin, apptask("quiet", namespace, replicas=0))
    poll_until(lambda: converged(admin, namespace, "nginx:1.25", 1), timeout=30,
               message="converged before the stall")
    restarts = process.metric("ssa_controller_watch_restarts_total")
    assert proxy.stall() >= 2  # at least the two watches
    put_apptask(admin, apptask("quiet", namespace, replicas=0, image="nginx:1.27"))
    seconds = timed(lambda: container(admin.get(DEPLOYMENTS.path(namespace, "quiet")))["image"]
                    == "nginx:1.27", STALL_BOUND + 20, "the change applied despite the stall")
    print(f"change during a silent stall applied after {seconds:.1f}s")
    assert seconds < STALL_BOUND
    poll_until(lambda: converged(admin, namespace, "nginx:1.27", 1), timeout=STALL_BOUND,
               message="status written")
    assert process.metric("ssa_controller_watch_restarts_total") > restarts
    assert WATCH_STALLED in process.log()
    assert process.proc.poll() is None


def test_a_stalled_write_fails_within_the_request_timeout_and_is_retried(
        admin, controller, namespace, proxy):
    """Item 3: a write whose answer never comes fails after timeouts.request and is retried."""
    request_timeout = 3.0
    controller(scoped(namespace, timeouts={"request": f"{request_timeout}s"}), server_url=proxy.url)
    put_apptask(admin, apptask("held", namespace, replicas=0))
    poll_until(lambda: converged(admin, namespace, "nginx:1.25", 1), timeout=30,
               message="converged")
    proxy.inject(["stall"], methods={"PATCH"}, limit=1)
    put_apptask(admin, apptask("held", namespace, replicas=0, image="nginx:1.27"))
    seconds = timed(lambda: converged(admin, namespace, "nginx:1.27", 1), 30,
                    "the change applied after the stalled write")
    print(f"stalled apply retried: converged after {seconds:.1f}s")
    applies = [r for r in proxy.records() if r.method == "PATCH" and "deployments" in r.path]
    assert [r.outcome for r in applies[-2:]] == ["stalled", 200]
    assert request_timeout <= applies[-1].at - applies[-2].at < request_timeout + 2.0
    assert seconds < request_timeout + 5.0


def test_throttling_server_errors_and_resets_are_retried_within_the_rate_limit(
        admin, controller, namespace, proxy):
    """Item 4: a quarter of all requests answered 429 (Retry-After: 2), 500, 503 or reset."""
    qps, burst, count = 10, 10, 30
    process = controller(scoped(namespace, workers=4, rateLimit={"qps": qps, "burst": burst}),
                         server_url=proxy.url)
    proxy.inject([429, 500, 503, "reset"], share=0.25, retry_after=2)
    for i in range(count):
        put_apptask(admin, apptask(f"flaky-{i}", namespace, replicas=0))
    poll_until(lambda: converged(admin, namespace, "nginx:1.25", count), timeout=90,
               message="all created through the faults")
    restarts, reset = process.metric("ssa_controller_watch_restarts_total"), time.monotonic()
    assert proxy.reset() >= 2  # the watches among them
    for i in range(count):
        put_apptask(admin, apptask(f"flaky-{i}", namespace, replicas=0, image="nginx:1.27"))
    updated = time.monotonic()
    poll_until(lambda: converged(admin, namespace, "nginx:1.27", count), timeout=90,
               message="all updated through the faults")
    proxy.pass_through()

    records = proxy.records()
    injected = proxy.outcomes(injected=True)
    print(f"faults injected: {dict(injected)} of {len(records)} requests")
    assert all(injected[fault] > 0 for fault in (429, 500, 503, "reset")), injected
    # Retry-After honoured: a throttled request is not sent again for 2 s. (A new generation is
    # tried at once by design, so 429s just before the update are not counted.)
    gaps = retry_gaps_after_429([r for r in records if r.at < updated - 2.5], 0.0) \
        + retry_gaps_after_429(records, updated)
    assert gaps and min(gaps)[0] >= 1.9, sorted(gaps)[:5]
    # Under the token bucket: at most burst + qps * width writes in any window, give or take
    # JITTER: the proxy sees a write when it arrives, not when the limiter let it go.
    writes = [r.at for r in records if r.method in ("POST", "PATCH", "PUT", "DELETE")]
    for width in (1.0, 5.0, 10.0):
        assert most_in_window(writes, width) <= burst + qps * (width + JITTER), width
    assert process.metric("ssa_controller_watch_restarts_total") > restarts
    assert any(r.is_watch and r.outcome == 200 and r.at > reset for r in records)
    assert process.proc.poll() is None


def test_transient_failures_write_no_status_until_they_last_degraded_after(
        admin, controller, namespace, proxy):
    """Every apply of one Deployment answered 503: while that lasts less than
    backoff.degradedAfter, the status is not written; past it, it says Degraded with the 503;
    once the applies pass, Ready again."""
    grace, name = 6.0, "blip"
    status_path = APPTASKS.path(namespace, name, "status")
    controller(scoped(namespace, backoff={"base": "200ms", "cap": "1s", "degradedAfter": grace}),
               server_url=proxy.url)
    put_apptask(admin, apptask(name, namespace, replicas=0))
    poll_until(lambda: status_of(admin, namespace, name).get("phase") == "Ready", timeout=30,
               message="Ready")

    blip = time.monotonic()
    proxy.inject([503], methods={"PATCH"}, path=DEPLOYMENTS.path(namespace, name))
    put_apptask(admin, apptask(name, namespace, replicas=0, image="nginx:1.26"))
    poll_until(lambda: proxy.outcomes(injected=True)[503] >= 3, timeout=10,
               message="three applies answered 503")
    proxy.pass_through()
    passed = time.monotonic()
    poll_until(lambda: converged(admin, namespace, "nginx:1.26", 1)
               and status_of(admin, namespace, name).get("phase") == "Ready", timeout=30,
               message="applied and Ready once the 503s passed")
    assert passed - blip < grace
    assert not [r for r in proxy.records() if r.path == status_path and blip <= r.at < passed]

    calm = time.monotonic()
    proxy.inject([503], methods={"PATCH"}, path=DEPLOYMENTS.path(namespace, name))
    put_apptask(admin, apptask(name, namespace, replicas=0, image="nginx:1.27"))
    poll_until(lambda: status_of(admin, namespace, name).get("phase") == "Degraded",
               timeout=30, message="Degraded once the 503s lasted")
    # the proxy records a request once its answer is relayed: the server may show the status
    # before the proxy's record of its write is there
    def with_the_write() -> list[RequestRecord] | None:
        records = proxy.records()
        return records if any(r.path == status_path and r.at >= calm for r in records) else None

    records = poll_until(with_the_write, timeout=10,
                         message="the proxy's record of the Degraded status write")
    first = min(r.at for r in records if r.injected and r.at >= calm)
    written = [r.at for r in records if r.path == status_path and r.at >= first]
    assert written and min(written) - first >= grace, (first, written)
    conditions = status_of(admin, namespace, name)["conditions"]
    assert any(c["reason"] == "ApplyFailed" and "503" in c["message"] for c in conditions)
    proxy.pass_through()
    poll_until(lambda: converged(admin, namespace, "nginx:1.27", 1)
               and status_of(admin, namespace, name).get("phase") == "Ready", timeout=30,
               message="Ready again")


def wall_clock(moment: float) -> datetime:
    """The wall-clock time (as the audit log has it) of a time.monotonic() reading."""
    return datetime.now(UTC) - timedelta(seconds=time.monotonic() - moment)


def test_a_leader_whose_new_connections_stall_stops_leading_by_its_renew_deadline(
        admin, controller, namespace, cluster, lease_name, proxy):
    """Issue 24, item 1: a renewal round whose first attempts are refused at once (500), then
    the leader's pooled connections are reset and every new TLS handshake is held. The attempt
    that needs a new connection starts with less time left than the 10 s connect timeout: the
    leader must stop leading (exit 1) by its renew deadline and send no lease request after
    it; the follower takes over, and the two never write in the same period."""
    config = scoped(namespace, leaderElection={
        "enabled": True, "namespace": CONTROLLER_NAMESPACE, "leaseName": lease_name})
    mark = cluster.audit.mark()
    leader = controller(config, server_url=proxy.url)
    poll_until(lambda: leader.metric("leader_election_master_status") == 1, timeout=30,
               message="the replica behind the proxy leads")
    follower = controller(config, user=TEST_USERS[1])
    proxy.inject([500], methods={"GET"}, path=LEASES.path(CONTROLLER_NAMESPACE, lease_name),
                 limit=3)
    refused = poll_until(lambda: len(r := [x for x in proxy.records() if x.injected]) == 3 and r,
                         timeout=30, interval=0.05, message="three renewal attempts refused")
    proxy.stall_handshakes()
    assert proxy.reset() >= 1  # the pooled connection: the next attempt needs a new one
    deadline = refused[0].at + RENEW_DEADLINE  # the round began with the first refused attempt

    def gone() -> float | None:
        return time.monotonic() if leader.proc.poll() is not None else None
    try:
        exited = poll_until(gone, timeout=deadline + 2 * EXIT_SLACK - time.monotonic(),
                            interval=0.05)
    except PollTimeout:
        exited = None
    held = proxy.held_handshakes
    proxy.pass_through()  # held handshakes go on: a request still waiting would be sent now
    if exited is None:
        exited = poll_until(gone, timeout=30, interval=0.05, message="the leader exits")
    print(f"leader exited {exited - deadline:+.1f}s from its renew deadline; "
          f"{held} handshakes held")
    assert leader.proc.returncode == 1
    assert held >= 1
    assert exited <= deadline + EXIT_SLACK, "the leader led past its renew deadline"
    late = [e for e in cluster.audit.select(mark, user=CONTROLLER, resource="leases")
            if e.received > wall_clock(deadline)]
    assert not late, [(e.verb, e.received.time().isoformat()) for e in late]

    poll_until(lambda: follower.metric("leader_election_master_status") == 1, timeout=30,
               message="the follower takes over")
    put_apptask(admin, apptask("after", namespace, replicas=0))
    poll_until(lambda: get_deployment(admin, namespace, "after"), timeout=30,
               message="the new leader reconciles")
    writes = controller_writes(cluster.audit, mark, namespace, lease_name)
    assert assert_one_writer_at_a_time(writes) == list(TEST_USERS)


class Counts:
    """watcher.WatchMetrics that counts."""

    def __init__(self) -> None:
        self.restarts = self.relists = 0

    def watch_restarted(self, resource: str) -> None:
        self.restarts += 1

    def watch_relisted(self, resource: str) -> None:
        self.relists += 1


def list_requests(proxy: FaultProxy, since: float = 0.0) -> list[RequestRecord]:
    return [r for r in proxy.records()
            if r.at >= since and r.method == "GET" and not r.is_watch and "/apptasks" in r.path]


def test_an_expired_continue_token_falls_back_to_one_unpaged_list_and_relists_back_off(
        admin, cluster, namespace, proxy, monkeypatch):
    """Issue 24, item 3: the proxy answers 410 Expired to every list request that carries a
    continue token (pages of 2 here), then to every watch. The watcher (in this process, as
    the controller's user) lists once more in one piece and syncs; relists that keep meeting
    410 wait the watch backoff (0.5 s doubling, jittered) instead of following back to back."""
    monkeypatch.setattr(watcher, "LIST_PAGE", 2)
    for i in range(5):
        put_apptask(admin, apptask(f"paged-{i}", namespace, replicas=0))
    kube = Kube(proxy.url, token=cluster.token(CONTROLLER), ca_file=str(cluster.ca_file))
    counts, stop = Counts(), threading.Event()
    watching = watcher.Watcher(kube, APPTASKS, Writer(), lambda old, new: None,
                               namespace=namespace, metrics=counts)
    thread = threading.Thread(target=watching.run, args=(stop,), daemon=True)
    proxy.inject([410], query="continue=")
    thread.start()
    try:
        poll_until(watching.synced.is_set, timeout=30, message="synced despite the expiry")
        assert len(watching.writer.store) == 5
        assert [("limit=2" in r.query, "continue=" in r.query, r.outcome)
                for r in list_requests(proxy)] == [
            (True, False, 200), (True, True, 410), (False, False, 200)]

        proxy.inject([410], query="watch=true")
        started = time.monotonic()
        proxy.reset()  # ends the open watch: every new one is answered 410
        time.sleep(RELIST_WINDOW)  # the fault window
        firsts = [r.at for r in list_requests(proxy, started) if "continue=" not in r.query]
        gaps = [later - earlier for earlier, later in zip(firsts, firsts[1:], strict=False)]
        print(f"{len(firsts)} relists in {RELIST_WINDOW:g}s of 410s, "
              f"{counts.relists} counted; gaps {[round(g, 2) for g in gaps]}")
        assert 2 <= len(firsts) <= 4
        assert counts.relists == len(firsts) and counts.restarts > len(firsts)
        assert min(gaps) >= 1.0 and gaps == sorted(gaps)  # spaced out, further and further
    finally:
        stop.set()
        watching.interrupt()
        thread.join(10)
        kube.close()


def test_a_server_refusing_create_only_applies_gets_read_then_apply(
        admin, controller, namespace, cluster, proxy):
    """Issue 24, item 6: every apply carrying the create-only precondition is answered 500, as
    some servers answer it ("resourceVersion should not be set on objects to be created").
    The first creation finds the same apply accepted without it; from then on creations read
    first and apply without it (counted once), so the second costs a GET and an apply."""
    process = controller(scoped(namespace), server_url=proxy.url)
    proxy.inject([500], methods={"PATCH"}, body=b'"resourceVersion":"1"')
    tasks = {}
    for name in ("first", "second"):
        mark = cluster.audit.mark()
        tasks[name] = put_apptask(admin, apptask(name, namespace, replicas=0))
        poll_until(lambda n=name: status_of(admin, namespace, n).get("phase") == "Ready",
                   timeout=30, message=f"{name} Ready")
    assert proxy.outcomes(injected=True) == {500: 1}
    assert process.metric("ssa_controller_create_precondition_fallbacks_total") == 1
    verbs = [e.verb for e in cluster.audit.select(mark, user=CONTROLLER, resource="deployments",
                                                  name="second")]
    assert verbs == ["get", "patch"]
    for name, task in tasks.items():
        owner, = get_deployment(admin, namespace, name)["metadata"]["ownerReferences"]
        assert owner["uid"] == task["metadata"]["uid"]


def test_readyz_fails_while_the_credentials_are_refused_and_passes_once_they_are_taken(
        controller, namespace, proxy):
    """Every request answered 401, as for a revoked token: /readyz fails once the refusals
    have lasted timeouts.request (3 s here; watches renewed every 1-1.5 s keep requests
    coming), and passes again at the first answer that is not a 401."""
    lasting = 3.0
    process = controller(scoped(namespace, timeouts={"request": f"{lasting:g}s", "watch": "1s"}),
                         server_url=proxy.url)

    def readyz() -> int:
        return process.get(process.health_port, "/readyz")[0]
    proxy.inject([401])
    unready = poll_until(lambda: readyz() == 500 and time.monotonic(), timeout=30,
                         interval=0.1, message="unready while every answer is 401")
    refused = unready - min(r.at for r in proxy.records() if r.injected)
    proxy.pass_through()
    seconds = timed(lambda: readyz() == 200, 30, "ready again once the credentials are taken")
    print(f"unready {refused:.1f}s after the first 401; ready {seconds:.1f}s after they stopped")
    assert lasting - 0.2 <= refused <= lasting + 2.0
    assert process.proc.poll() is None


def test_apiserver_restart_mid_burst_loses_and_duplicates_nothing(
        admin, controller, namespace, cluster):
    """Item 1: kube-apiserver killed while 200 AppTasks are being reconciled, started again on
    the same port; default settings."""
    count, down = 200, 5.0
    for i in range(count):
        put_apptask(admin, apptask(f"burst-{i}", namespace, replicas=0))
    process = controller(scoped(namespace, **DEFAULT_TIMEOUTS))  # all 200 to do at once
    poll_until(lambda: len(admin.list(DEPLOYMENTS.path(namespace))["items"]) >= count // 4,
               timeout=60, interval=0.2, message="a quarter of the Deployments applied")

    def transport_errors() -> float:
        return sum(v for k, v in process.metrics().items()
                   if k.startswith("rest_client_requests_total{") and 'code="<error>"' in k)
    before, applied = transport_errors(), len(admin.list(DEPLOYMENTS.path(namespace))["items"])
    stopped = time.monotonic()
    cluster.stop_apiserver()
    time.sleep(down)  # the outage: a fixed window is the measurement
    cluster.start_apiserver()
    outage = time.monotonic() - stopped
    failed = transport_errors() - before
    print(f"killed with {applied}/{count} Deployments applied; outage {outage:.1f}s: "
          f"{failed:.0f} failed requests, {failed / outage:.1f}/s")

    poll_until(lambda: converged(admin, namespace, "nginx:1.25", count), timeout=120,
               message="every AppTask converged after the restart")
    tasks = {t["metadata"]["name"]: t for t in admin.list(APPTASKS.path(namespace))["items"]}
    deployments = admin.list(DEPLOYMENTS.path(namespace))["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(tasks)
    for deployment in deployments:
        owners = deployment["metadata"]["ownerReferences"]
        assert [o["uid"] for o in owners] == [tasks[deployment["metadata"]["name"]]["metadata"]
                                               ["uid"]]
    assert process.proc.poll() is None
    assert "Traceback" not in process.log()
    qps, burst = 20, 50  # the default write rate limit: every retry is a write
    assert 0 < failed <= burst + qps * outage
