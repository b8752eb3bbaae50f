"""Runs the controller process: servers, watches, leader election, workers, resync, shutdown.

Followers keep their caches warm; only the leader runs workers and the resync job. Winning
the lease hands back to the elector at once: a background thread starts the workers when the
caches have synced (a missing CRD can take a while), and only if the process still leads and
is not stopping, so renewals never wait for a cache. The elector has a client of its own,
outside the write rate limit of applies, status patches and Events. Losing the lease exits
the process at once with status 1 (as controller-runtime does), during shutdown too, so two
replicas never write together. SIGTERM / SIGINT: stop taking work, let in-flight reconciles
finish within the grace period while the lease is still renewed, stop the resync job, post
the queued Events, then release the lease, exit 0.

With sharding (sharded.py) every process is a shard: it holds a shard Lease of its own, elected
and renewed the same way, and runs its workers (on its share of the AppTasks) while it holds
that one; the leader Lease's holder also runs the sharder. Losing either Lease exits at once;
at shutdown the shard Lease is released once the workers finished (its AppTasks then move at
once), the leader Lease once the sharder's writes finished too.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .client.kube import Kube
from .controller import Controller
from .runtime import resync
from .runtime.backoff import TokenBucket
from .runtime.events import EventRecorder
from .runtime.leader import LeaderElector, default_identity
from .runtime.refusals import CredentialRefusals
from .runtime.sharding.sharder import Sharder
from .serving import metricsserver
from .serving.health import HealthServer
from .serving.httpserver import ListenError
from .serving.metrics import Metrics
from .settings.config import Config
from .sharded import Membership, ring_labels, shard_name, sharder

log = logging.getLogger(__name__)
EVENT_SOURCE = "example.com/ssa-controller"


def configure_client(kube: Kube, config: Config, metrics: Metrics,
                     refusals: CredentialRefusals) -> Kube:
    """Give a client the controller's write rate limit, timeouts and request metrics, and let
    `refusals` see every answer's status."""
    kube.write_limiter = TokenBucket(config.rate_limit.qps, config.rate_limit.burst)
    kube.request_timeout = config.timeouts.request
    count = metrics.request_observer(urlsplit(kube.server).netloc)

    def observe(method: str, status: int, seconds: float) -> None:
        count(method, status, seconds)
        refusals.observe(status)
    kube.observer = observe
    return kube


@dataclass
class Process:
    """The running parts of one controller process."""

    config: Config
    kube: Kube
    identity: str = field(default_factory=default_identity)
    metrics: Metrics = field(default_factory=Metrics)
    stop: threading.Event = field(default_factory=threading.Event)
    exit: Callable[[int], Any] = os._exit

    def __post_init__(self) -> None:
        self.refusals = CredentialRefusals(self.config.timeouts.request)
        configure_client(self.kube, self.config, self.metrics, self.refusals)
        self.events = EventRecorder(self.kube, controller=EVENT_SOURCE, instance=self.identity,
                                    qps=self.config.events.qps, burst=self.config.events.burst,
                                    enabled=not self.config.dry_run, metrics=self.metrics)
        self.sharded = self.config.sharding.enabled and not self.config.dry_run
        self.shard_name = shard_name(self.identity) if self.sharded else None
        membership: Membership | None = None
        self.sharder: Sharder | None = None
        if self.shard_name is not None:
            sharding = self.metrics.sharding(self.config.leader_election.lease_name,
                                             self.shard_name)
            membership = Membership(self.shard_name, sharding)
        self.controller = Controller(self.config, self.kube, self.events, self.metrics,
                                     membership=membership)
        if membership is not None:
            scope = self.controller.scope
            self.sharder = sharder(
                self.config, self.kube, lambda key: scope.ignores(key.namespace) is None,
                sharding, self.metrics)
        self.elector: LeaderElector | None = None
        self.shard_elector: LeaderElector | None = None
        """With sharding: the election of this process's own shard Lease."""
        self.workers: list[threading.Thread] = []
        self.sharding: list[threading.Thread] = []
        """The sharder's threads (while leading, with sharding)."""
        self.watches: list[threading.Thread] = []
        self.scheduler: Any = None
        self._starting = threading.Lock()
        """Held while the workers start; shutdown takes it, so none start once it began."""

    # -- health ---------------------------------------------------------------------------

    def alive(self) -> bool:
        threads_ok = all(t.is_alive() for t in self.watches + self.workers + self.sharding)
        return threads_ok and all(elector.healthy() for elector in self._electors())

    def ready(self) -> bool:
        return self.controller.synced and (self.sharder is None or self.sharder.synced)

    def _electors(self) -> list[LeaderElector]:
        """The elections running: the shard Lease's (with sharding), the leader Lease's."""
        return [e for e in (self.shard_elector, self.elector) if e is not None]

    # -- leading --------------------------------------------------------------------------

    def may_lead(self) -> bool:
        """Whether workers may run: not shutting down, and holding the lease when elections
        are on (with sharding: the shard Lease)."""
        elector = self.shard_elector if self.sharded else self.elector
        return not self.stop.is_set() and (elector is None or elector.is_leader)

    def may_shard(self) -> bool:
        """Whether the sharder may run: not shutting down, and holding the leader Lease."""
        return not self.stop.is_set() and self.elector is not None and self.elector.is_leader

    def start_leading(self) -> None:
        """Start the workers once the caches have synced (never reconcile from an empty cache).

        Returns at once (the elector calls it and must go on renewing): the wait is done by a
        background thread.
        """
        self._when_synced(self.controller.wait_synced, self.may_lead, self._start_workers,
                          "start-workers")

    def start_sharding(self) -> None:
        """Start the sharder once its view has synced (as start_leading, for the leader Lease
        of a sharded process)."""
        assert self.sharder is not None
        self._when_synced(self.sharder.wait_synced, self.may_shard, self._start_sharder,
                          "start-sharder")

    def _when_synced(self, wait_synced: Callable[[float], bool], allowed: Callable[[], bool],
                     start: Callable[[], None], name: str) -> None:
        """In a background thread: once `wait_synced`, `start()` if still `allowed()`."""
        def run() -> None:
            while not wait_synced(1.0):
                if not allowed():
                    return
            with self._starting:
                if allowed():
                    start()
        threading.Thread(target=run, name=name, daemon=True).start()

    def _start_sharder(self) -> None:
        assert self.sharder is not None
        log.info("starting the sharder")
        self.sharding = self.sharder.start()

    def _start_workers(self) -> None:
        log.info("starting %d workers and the resync job", self.config.workers)
        self.workers = self.controller.start_workers()
        self.scheduler = resync.start(self.controller.resync, self.config.resync.period,
                                      self.config.resync.jitter)

    def lost_leadership(self) -> None:
        """The lease was not renewed in time: another replica may lead now, so stop writing."""
        log.error("leadership lost: exiting so that no two replicas reconcile at once")
        self.exit(1)

    def lost_shard(self) -> None:
        """The shard Lease was not renewed in time: its AppTasks may move now, so stop writing."""
        log.error("shard Lease lost: exiting so that no two shards reconcile one AppTask")
        self.exit(1)

    def _elector(self) -> LeaderElector:
        """The Lease election, with a client of its own outside the write rate limit."""
        le = self.config.leader_election
        return LeaderElector(
            self.kube.with_write_limit(None), namespace=le.namespace, name=le.lease_name,
            identity=self.identity, lease_duration=le.lease_duration,
            renew_deadline=le.renew_deadline, retry_period=le.retry_period,
            on_started_leading=self.start_sharding if self.sharded else self.start_leading,
            on_stopped_leading=self.lost_leadership, metrics=self.metrics)

    def _shard_elector(self) -> LeaderElector:
        """The election of this process's own shard Lease, named after it, labelled with its
        ring, renewed as the leader Lease (no metrics: it is no leader)."""
        le = self.config.leader_election
        assert self.shard_name is not None
        return LeaderElector(
            self.kube.with_write_limit(None), namespace=le.namespace, name=self.shard_name,
            identity=self.shard_name, lease_duration=le.lease_duration,
            renew_deadline=le.renew_deadline, retry_period=le.retry_period,
            on_started_leading=self.start_leading, on_stopped_leading=self.lost_shard,
            labels=ring_labels(self.config))

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        metrics_server = metricsserver.serve_configured(self.metrics.registry, cfg.server,
                                                         self.kube)
        health = HealthServer(cfg.server.health_listen, cfg.server.health_port,
                              healthz={"ping": self.alive},
                              readyz={"informers": self.ready,
                                      "credentials": self.refusals.accepted})
        try:
            health.start()
        except ListenError:
            if metrics_server is not None:
                metrics_server.stop()
            raise
        self.events.start()
        self.watches = self.controller.start_watches(self.stop)
        if self.sharder is not None:
            self.watches += self.sharder.start_watches(self.stop)
        if cfg.leader_election.enabled and not cfg.dry_run:
            self.elector = self._elector()
            if self.sharded:
                self.shard_elector = self._shard_elector()
            # They run until release() at the end of shutdown (or a lost lease), not until stop.
            for elector in self._electors():
                threading.Thread(target=elector.run, name=f"election-{elector.name}",
                                 daemon=True).start()
        else:
            self.start_leading()
        self.stop.wait()
        self.shutdown()
        health.stop()
        if metrics_server is not None:
            metrics_server.stop()
        return 0

    def shutdown(self) -> None:
        log.info("shutting down: finishing in-flight reconciles (grace %.0fs)",
                 self.config.shutdown_grace_period)
        with self._starting:  # a start under way completes first; none begins after this
            self.stop.set()
        self.controller.stop_watches()
        if self.sharder is not None:
            self.sharder.stop_watches()
            self.sharder.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        self.controller.stop_workers()
        deadline = time.monotonic() + self.config.shutdown_grace_period
        for worker in self.workers + self.sharding:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.events.stop(timeout=max(1.0, deadline - time.monotonic()))
        self._release_lease()
        log.info("stopped")

    def _release_lease(self) -> None:
        """Give the leases up once no worker (nor sharder) runs any more (the electors renew
        them until then): the shard Lease first, so that its AppTasks move at once."""
        if not self._electors():
            return
        if any(worker.is_alive() for worker in self.workers + self.sharding):
            log.warning("reconciles still running after the grace period: leaving the lease "
                        "to expire instead of releasing it")
            return
        for elector in self._electors():
            elector.release()

    def handle_signals(self) -> None:
        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.stop.set()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
