"""Metrics names and labels, the /metrics endpoint, and the /healthz and /readyz probes."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ssa_controller.apptask.outcomes import Outcome
from ssa_controller.runtime.workqueue import QueueMetrics
from ssa_controller.serving import metricsserver
from ssa_controller.serving.health import HealthServer, aggregate, single
from ssa_controller.serving.metrics import Metrics

CONTROLLER_RUNTIME_NAMES = [
    "controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
    "controller_runtime_reconcile_time_seconds", "controller_runtime_max_concurrent_reconciles",
    "controller_runtime_active_workers", "workqueue_depth", "workqueue_adds_total",
    "workqueue_retries_total", "workqueue_queue_duration_seconds",
    "workqueue_work_duration_seconds", "leader_election_master_status",
    "rest_client_requests_total", "rest_client_request_duration_seconds",
]
OWN_NAMES = [
    "ssa_controller_applies_total", "ssa_controller_fights_detected_total",
    "ssa_controller_conflicts_total", "ssa_controller_status_updates_total",
    "ssa_controller_watch_restarts_total", "ssa_controller_watch_relists_total",
    "ssa_controller_cached_objects", "ssa_controller_events_total",
    "ssa_controller_events_dropped_total",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: Metrics, sample: str, /, **labels: str) -> float:
    return samples(metrics)[(sample, frozenset(labels.items()))]


def exercise(metrics: Metrics) -> None:
    """Touch every labelled metric once so each appears in the exposition."""
    metrics.register_controller("apptask", 2)
    metrics.reconcile_done("apptask", "success", 0.2)
    with metrics.active_worker("apptask"):
        pass
    queue = metrics.queue_metrics("apptask")
    queue.added()
    queue.depth(1)
    queue.queue_latency(0.001)
    queue.work_duration(0.1)
    queue.retried()
    metrics.set_leader("ssa-controller", True)
    metrics.request_observer("127.0.0.1:6443")("GET", 200, 0.01)
    metrics.watch_restarted("apptasks")
    metrics.watch_relisted("apptasks")
    metrics.count_cached_objects("apptasks", lambda: 3)
    metrics.event_emitted("Normal", "Applied")


def test_exposition_has_controller_runtime_and_own_names() -> None:
    metrics = Metrics()
    exercise(metrics)
    text = metrics.exposition().decode()
    for name in CONTROLLER_RUNTIME_NAMES + OWN_NAMES:
        assert f"\n{name}" in text or text.startswith(name), name


def test_reconcile_results_and_errors() -> None:
    metrics = Metrics()
    metrics.register_controller("apptask", 4)
    assert value(metrics, "controller_runtime_reconcile_total", controller="apptask",
                 result="requeue_after") == 0
    metrics.reconcile_done("apptask", "error", 0.5)
    metrics.reconcile_done("apptask", "requeue", 0.1)
    assert value(metrics, "controller_runtime_reconcile_total", controller="apptask",
                 result="error") == 1
    assert value(metrics, "controller_runtime_reconcile_errors_total", controller="apptask") == 1
    assert value(metrics, "controller_runtime_reconcile_time_seconds_count",
                 controller="apptask") == 2
    assert value(metrics, "controller_runtime_max_concurrent_reconciles",
                 controller="apptask") == 4
    with pytest.raises(ValueError):
        metrics.reconcile_done("apptask", "maybe", 0.1)


def test_active_workers_count_while_inside_the_block() -> None:
    metrics = Metrics()
    with metrics.active_worker("apptask"):
        assert value(metrics, "controller_runtime_active_workers", controller="apptask") == 1
    assert value(metrics, "controller_runtime_active_workers", controller="apptask") == 0


def test_queue_metrics_implement_the_workqueue_protocol() -> None:
    metrics = Metrics()
    queue: QueueMetrics = metrics.queue_metrics("apptask")
    queue.added()
    queue.added()
    queue.depth(2)
    queue.retried()
    queue.queue_latency(0.5)
    assert value(metrics, "workqueue_adds_total", name="apptask") == 2
    assert value(metrics, "workqueue_depth", name="apptask") == 2
    assert value(metrics, "workqueue_retries_total", name="apptask") == 1
    assert value(metrics, "workqueue_queue_duration_seconds_count", name="apptask") == 1


def test_request_observer_labels_like_client_go() -> None:
    metrics = Metrics()
    observe = metrics.request_observer("10.0.0.1:6443")
    observe("PATCH", 409, 0.02)
    observe("GET", 0, 10.0)
    assert value(metrics, "rest_client_requests_total", code="409", method="PATCH",
                 host="10.0.0.1:6443") == 1
    assert value(metrics, "rest_client_requests_total", code="<error>", method="GET",
                 host="10.0.0.1:6443") == 1
    assert value(metrics, "rest_client_request_duration_seconds_count", verb="GET",
                 host="10.0.0.1:6443") == 1


def test_apply_outcomes_start_at_zero_and_are_labelled_by_value() -> None:
    metrics = Metrics()
    for outcome in ("applied", "unchanged", "conflict", "dry_run", "invalid", "error"):
        assert value(metrics, "ssa_controller_applies_total", outcome=outcome) == 0
    assert ("ssa_controller_applies_total", frozenset({("outcome", "skipped")})) not in samples(
        metrics)
    metrics.apply_outcome(Outcome.DRY_RUN)
    assert value(metrics, "ssa_controller_applies_total", outcome="dry_run") == 1


def test_own_counters() -> None:
    metrics = Metrics()
    metrics.fight_detected()
    metrics.conflict()
    metrics.status_updated()
    metrics.event_dropped()
    metrics.set_leader("lease", False)
    for name in ("ssa_controller_fights_detected_total", "ssa_controller_conflicts_total",
                 "ssa_controller_status_updates_total", "ssa_controller_events_dropped_total"):
        assert value(metrics, name) == 1
    assert value(metrics, "leader_election_master_status", name="lease") == 0


def test_two_instances_do_not_collide() -> None:
    first, second = Metrics(), Metrics()
    first.fight_detected()
    assert value(second, "ssa_controller_fights_detected_total") == 0


def test_metrics_server_serves_text_format() -> None:
    metrics = Metrics()
    metrics.fight_detected()
    assert metricsserver.serve(metrics.registry, "127.0.0.1", 0) is None
    server = metricsserver.serve(metrics.registry, "127.0.0.1", free_port())
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            assert b"ssa_controller_fights_detected_total 1.0" in response.read()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/other")
        assert info.value.code == 404
    finally:
        server.stop()


# --- health -------------------------------------------------------------------------------

def boom() -> bool:
    raise RuntimeError("check crashed")


def test_aggregate_ok_and_verbose() -> None:
    checks = {"informers": lambda: True, "leader": lambda: True}
    assert aggregate(checks, set(), verbose=False) == (200, "ok")
    assert aggregate(checks, set(), verbose=True) == (
        200, "[+]informers ok\n[+]leader ok\nhealthz check passed\n")
    assert aggregate({}, set(), verbose=True) == (200, "[+]ping ok\nhealthz check passed\n")


def test_aggregate_failure_lists_every_check() -> None:
    checks = {"informers": lambda: False, "leader": lambda: True, "workers": boom}
    assert aggregate(checks, set(), verbose=False) == (
        500, "[-]informers failed: reason withheld\n[+]leader ok\n"
             "[-]workers failed: reason withheld\nhealthz check failed\n")


def test_aggregate_exclude() -> None:
    checks = {"informers": lambda: False, "leader": lambda: True}
    status, body = aggregate(checks, {"informers", "nope"}, verbose=True)
    assert status == 200
    assert body == ('[+]informers excluded: ok\n[+]leader ok\n'
                    'warn: some health checks cannot be excluded: no matches for "nope"\n'
                    'healthz check passed\n')


def test_single_check() -> None:
    checks = {"informers": lambda: False, "leader": lambda: True}
    assert single(checks, "leader") == (200, "ok")
    assert single(checks, "informers")[0] == 500
    assert single(checks, "missing")[0] == 404


@pytest.fixture
def health() -> Iterator[tuple[HealthServer, dict[str, bool]]]:
    state = {"synced": False}
    server = HealthServer("127.0.0.1", free_port(), healthz={"threads": lambda: True},
                          readyz={"informers": lambda: state["synced"]})
    server.start()
    yield server, state
    server.stop()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_health_server_endpoints(health: tuple[HealthServer, dict[str, bool]]) -> None:
    server, state = health
    assert get(server.port, "/healthz") == (200, "ok")
    assert get(server.port, "/readyz") == (
        500, "[-]informers failed: reason withheld\nhealthz check failed\n")
    state["synced"] = True
    assert get(server.port, "/readyz") == (200, "ok")
    assert get(server.port, "/readyz?verbose") == (
        200, "[+]informers ok\nhealthz check passed\n")
    assert get(server.port, "/readyz/informers") == (200, "ok")
    assert get(server.port, "/livez")[0] == 404


def test_health_server_port_zero_is_disabled() -> None:
    server = HealthServer("127.0.0.1", 0, healthz={}, readyz={})
    server.start()
    assert not server.enabled
    server.stop()
