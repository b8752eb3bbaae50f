"""Prometheus metrics with controller-runtime's and client-go's names and labels.

Existing controller-runtime dashboards and alerts work unchanged: reconcile counts and
durations, work queue activity, leader status and REST client requests use the same
metric names and labels; the controller's own counters are prefixed `ssa_controller_`.
Each `Metrics` owns its registry, so several controllers in one (test) process don't
collide; it also carries the process_* metrics (RSS, CPU, open fds) as controller-runtime's
do. ssa_controller.serving.metricsserver serves it on /metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from .. import version
from ..apptask.outcomes import Outcome
from ..client.resources import APPTASKS, DEPLOYMENTS
from ..runtime.sharding.labels import Move

log = logging.getLogger(__name__)

RECONCILE_RESULTS = ("success", "error", "requeue", "requeue_after")
APPLY_OUTCOMES = tuple(outcome for outcome in Outcome if outcome is not Outcome.SKIPPED)
WATCHED_RESOURCES = (APPTASKS.plural, DEPLOYMENTS.plural)

# controller-runtime's reconcile_time_seconds buckets.
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                     0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0,
                     4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60)
# controller-runtime's workqueue buckets: prometheus.ExponentialBuckets(10e-9, 10, 12).
WORKQUEUE_BUCKETS = tuple(1e-8 * 10**i for i in range(12))
# client-go's rest_client_request_duration_seconds buckets.
REQUEST_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# A drain waits for the reconcile in flight and the queue: from milliseconds to a request timeout.
DRAIN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value


class Metrics:
    """Every metric of the controller, in its own CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total", "Total number of reconciliations per controller",
            ["controller", "result"], registry=r)
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller", ["controller"], registry=r)
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller", ["controller"],
            buckets=RECONCILE_BUCKETS, registry=r)
        self.max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller", ["controller"], registry=r)
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller", ["controller"], registry=r)
        self.queue_depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"],
                                 registry=r)
        self.queue_adds = Counter("workqueue_adds_total",
                                  "Total number of adds handled by workqueue", ["name"],
                                  registry=r)
        self.queue_retries = Counter("workqueue_retries_total",
                                     "Total number of retries handled by workqueue", ["name"],
                                     registry=r)
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            ["name"], buckets=WORKQUEUE_BUCKETS, registry=r)
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes", ["name"],
            buckets=WORKQUEUE_BUCKETS, registry=r)
        self.leader_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, "
            "0 indicates backup, 1 indicates master. 'name' is the string used to identify "
            "the lease.", ["name"], registry=r)
        self.requests = Counter(
            "rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ["code", "method", "host"], registry=r)
        self.request_duration = Histogram(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb, and host.", ["verb", "host"],
            buckets=REQUEST_BUCKETS, registry=r)
        self.applies = Counter("ssa_controller_applies_total",
                               "Server-side applies of Deployments by outcome", ["outcome"],
                               registry=r)
        self.fights = Counter("ssa_controller_fights_detected_total",
                              "Field-manager fights detected on managed Deployments", registry=r)
        self.conflicts = Counter("ssa_controller_conflicts_total",
                                 "Apply conflicts reported by the API server", registry=r)
        self.status_updates = Counter("ssa_controller_status_updates_total",
                                      "AppTask status updates written", registry=r)
        self.precondition_fallbacks = Counter(
            "ssa_controller_create_precondition_fallbacks_total",
            "Times the API server was found to refuse create-only applies, so that creations "
            "read first (at most once a process)", registry=r)
        self.watch_restarts = Counter("ssa_controller_watch_restarts_total",
                                      "Watches re-established after ending", ["resource"],
                                      registry=r)
        self.watch_relists = Counter("ssa_controller_watch_relists_total",
                                     "Full relists after a watch could not resume",
                                     ["resource"], registry=r)
        self.cached_objects = Gauge("ssa_controller_cached_objects",
                                    "Objects held in the informer cache", ["resource"],
                                    registry=r)
        self.events = Counter("ssa_controller_events_total",
                              "Kubernetes Events emitted (created or series-patched)",
                              ["type", "reason"], registry=r)
        self.events_dropped = Counter("ssa_controller_events_dropped_total",
                                      "Events dropped by rate limiting, a full queue or shutdown",
                                      registry=r)
        build = version.build_info()
        Gauge("ssa_controller_build_info", "Always 1; its labels say which build runs",
              ["version", "revision", "python"], registry=r).labels(
                  build.version, build.revision, build.python).set(1)
        for outcome in APPLY_OUTCOMES:
            self.applies.labels(outcome)
        for resource in WATCHED_RESOURCES:  # from zero, so increase() sees the first one
            self.watch_restarts.labels(resource)
            self.watch_relists.labels(resource)
        ProcessCollector(registry=r)
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """metric.labels(*values), cached: prometheus_client checks the values and takes a
        lock on every call, and every request and reconcile looks up the same few children. A
        race adds the same child twice: labels() returns one child per values."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def register_controller(self, controller: str, max_concurrent_reconciles: int) -> None:
        """Publish a controller's worker count and zero its series, as controller-runtime does."""
        self.max_concurrent.labels(controller).set(max_concurrent_reconciles)
        self.active_workers.labels(controller).set(0)
        self.reconcile_errors.labels(controller)
        for result in RECONCILE_RESULTS:
            self.reconcile_total.labels(controller, result)

    def reconcile_done(self, controller: str, result: str, seconds: float) -> None:
        """Count one reconcile: result is success | error | requeue | requeue_after."""
        self._child(self.reconcile_total, controller,
                    _check(result, RECONCILE_RESULTS, "result")).inc()
        if result == "error":
            self._child(self.reconcile_errors, controller).inc()
        self._child(self.reconcile_time, controller).observe(seconds)

    @contextmanager
    def active_worker(self, controller: str) -> Iterator[None]:
        """Count a worker as active for the duration of the block (one reconcile)."""
        gauge = self._child(self.active_workers, controller)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def queue_metrics(self, name: str) -> WorkQueueMetrics:
        """A runtime.workqueue.QueueMetrics for the queue `name`."""
        return WorkQueueMetrics(self, name)

    def request_observer(self, host: str) -> Callable[[str, int, float], None]:
        """A Kube(observer=...) callback: (method, status or 0 on transport error, seconds)."""
        def observe(method: str, status: int, seconds: float) -> None:
            code = str(status) if status else "<error>"
            self._child(self.requests, code, method, host).inc()
            self._child(self.request_duration, method, host).observe(seconds)
        return observe

    def set_leader(self, name: str, leading: bool) -> None:
        self.leader_status.labels(name).set(1 if leading else 0)

    def apply_outcome(self, outcome: Outcome) -> None:
        """Count one reconcile's outcome (never a skipped one)."""
        self._child(self.applies, outcome).inc()

    def fight_detected(self) -> None:
        self.fights.inc()

    def conflict(self) -> None:
        self.conflicts.inc()

    def status_updated(self) -> None:
        self.status_updates.inc()

    def create_precondition_fallback(self) -> None:
        self.precondition_fallbacks.inc()

    def watch_restarted(self, resource: str) -> None:
        self.watch_restarts.labels(resource).inc()

    def watch_relisted(self, resource: str) -> None:
        self.watch_relists.labels(resource).inc()

    def count_cached_objects(self, resource: str, count: Callable[[], int]) -> None:
        """Report `count()` as the number of cached `resource` objects, read at each scrape."""
        self.cached_objects.labels(resource).set_function(count)

    def sharding(self, ring: str, shard: str) -> ShardingMetrics:
        """The metrics of a sharded process (the shard `shard` of the ring `ring`), added to the
        registry: a process without sharding serves none of them."""
        return ShardingMetrics(self, ring, shard)

    def event_emitted(self, type_: str, reason: str) -> None:
        self._child(self.events, type_, reason).inc()

    def event_dropped(self) -> None:
        self.events_dropped.inc()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

class ShardingMetrics:
    """A sharded process's metrics: its shard's (drains it acknowledged, how long each took) and
    the ring's as it sees it (live shards, unassigned objects), and the sharder's writes while
    it leads (runtime.sharding.sharder.SharderMetrics). The shard's objects are its cached
    AppTasks (ssa_controller_cached_objects{resource="apptasks"})."""

    def __init__(self, metrics: Metrics, ring: str, shard: str) -> None:
        self._metrics = metrics
        r = metrics.registry
        Gauge("ssa_controller_shard_info", "Always 1 on a sharded process; names its shard "
              "(its Lease and label value) and ring (its Leases' label)", ["ring", "shard"],
              registry=r).labels(ring, shard).set(1)
        self._drains = Counter("ssa_controller_shard_drains_total",
                               "AppTasks this shard gave back to the sharder to be moved "
                               "(drains acknowledged)", registry=r)
        self._drain_time = Histogram(
            "ssa_controller_shard_drain_seconds",
            "From a drain mark reaching this shard's cache to its acknowledgement",
            buckets=DRAIN_BUCKETS, registry=r)
        self._shards = Gauge("ssa_controller_ring_shards",
                             "Live shards in the ring, as this process sees their Leases",
                             registry=r)
        self._unassigned = Gauge("ssa_controller_unassigned_objects",
                                 "AppTasks assigned to no shard, as this process sees them",
                                 registry=r)
        self._oldest = Gauge("ssa_controller_unassigned_oldest_seconds",
                             "How long the AppTask unassigned longest has been waiting, as "
                             "this process saw it (0: none waits)", registry=r)
        self._writes = Counter("ssa_controller_sharder_writes_total",
                               "Shard labels the sharder wrote: assign (an unassigned AppTask), "
                               "drain (asked of a live shard, to move it), move (off a dead "
                               "shard, at once)", ["move"], registry=r)
        for move in Move:
            self._writes.labels(move.value)

    def view(self, shards: Callable[[], int], unassigned: Callable[[], int],
             oldest: Callable[[], float]) -> None:
        """Report the live shards, the unassigned AppTasks and the longest wait of one, read at
        each scrape."""
        self._shards.set_function(shards)
        self._unassigned.set_function(unassigned)
        self._oldest.set_function(oldest)

    def written(self, move: Move) -> None:
        self._writes.labels(move.value).inc()

    def queue(self) -> WorkQueueMetrics:
        """The sharder's work queue's."""
        return WorkQueueMetrics(self._metrics, "sharder")

    def drained(self, seconds: float) -> None:
        """This shard acknowledged a drain `seconds` after its mark arrived."""
        self._drains.inc()
        self._drain_time.observe(seconds)


class WorkQueueMetrics:
    """runtime.workqueue.QueueMetrics backed by the workqueue_* metrics of one queue."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._depth = metrics.queue_depth.labels(name)
        self._adds = metrics.queue_adds.labels(name)
        self._retries = metrics.queue_retries.labels(name)
        self._latency = metrics.queue_duration.labels(name)
        self._work = metrics.work_duration.labels(name)

    def added(self) -> None:
        self._adds.inc()

    def depth(self, n: int) -> None:
        self._depth.set(n)

    def queue_latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def work_duration(self, seconds: float) -> None:
        self._work.observe(seconds)

    def retried(self) -> None:
        self._retries.inc()
