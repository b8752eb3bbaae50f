"""The controller: watches feed the caches, events enqueue keys, workers reconcile them.

Data flows one way: watch event -> store -> predicate -> key enqueued -> worker -> reconcile
-> apply / status patch -> Result -> the one outcome switch (error: rate-limited retry;
requeue_after: forget the backoff, add after the delay; success: forget). With sharding, the
watches select this shard's AppTasks and Deployments, and its gate (sharded.Shard) comes
before each reconcile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from . import logs
from .apptask import desired, diff, predicates
from .apptask.fights import FightTracker
from .apptask.outcomes import Outcome
from .apptask.scope import NamespaceScope
from .client.kube import Kube
from .client.resources import APPTASKS, DEPLOYMENTS, SERVICES, Resource
from .client.wire import ApiError
from .reconciler import EventSink, Reconciler, Result, item_backoff
from .runtime.objectkey import ObjectKey
from .runtime.store import Cached, Writer
from .runtime.watcher import ChangeHandler, Watcher, start_all
from .runtime.workqueue import WorkQueue
from .serving.metrics import Metrics
from .settings.config import Config
from .sharded import Membership, Shard

log = logging.getLogger(__name__)
NAME = "apptask"
MANAGED_SELECTOR = f"{desired.MANAGED_BY_LABEL}={desired.MANAGED_BY_VALUE}"


class Controller:
    """One AppTask controller: caches, queue, workers, and the outcome switch."""

    def __init__(self, config: Config, kube: Kube, events: EventSink, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic,
                 membership: Membership | None = None) -> None:
        """`membership`: with sharding, the shard this process is (its AppTasks only)."""
        self.config = config
        self.metrics = metrics
        # held by the watches alone
        apptasks, deployments, services = Writer(), Writer(with_owners=True), \
            Writer(with_owners=True)
        self.apptasks, self.deployments = apptasks.store, deployments.store
        self.shard = None if membership is None else Shard(
            membership, kube, self.apptasks, apptasks.answers, config.field_manager, clock)
        self.services = services.store
        metrics.count_cached_objects("apptasks", self.apptasks.__len__)
        metrics.count_cached_objects("deployments", self.deployments.__len__)
        metrics.count_cached_objects("services", self.services.__len__)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(item_backoff(config.backoff), clock=clock,
                                                     metrics=metrics.queue_metrics(NAME))
        self.fights = FightTracker(config.fights.threshold, config.fights.window,
                                   config.fights.backoff_base, config.fights.backoff_cap)
        self.reconciler = Reconciler(config, kube, self.apptasks, self.deployments,
                                     self.services, self.fights, events,
                                     apptask_answers=apptasks.answers,
                                     deployment_answers=deployments.answers,
                                     service_answers=services.answers, clock=clock,
                                     shard=None if membership is None else membership.name)
        self.plans: dict[ObjectKey, tuple[diff.Plan | None, diff.Plan | None]] = {}
        """The latest dry-run plans per AppTask, its Deployment's and its Service's (dry-run
        mode only)."""
        self._stopping = threading.Event()
        self.scope = NamespaceScope.of(config, os.environ)
        self._ignoring: set[str] = set()
        """Namespaces whose AppTasks were found ignored (each is logged once)."""
        namespaces = config.namespaces or (None,)
        timeout = config.timeouts.watch
        mine = None if self.shard is None else self.shard.selector
        managed = MANAGED_SELECTOR if mine is None else f"{MANAGED_SELECTOR},{mine}"
        watched: tuple[tuple[Resource, Writer, ChangeHandler, str | None], ...] = (
            (APPTASKS, apptasks, self._on_apptask, mine),
            (DEPLOYMENTS, deployments, self._on_deployment, managed),
            (SERVICES, services, self._on_service, managed))
        self.watchers = [  # a shard's selectors match 1/N: it lists from the watch cache
            Watcher(kube, resource, writer, handler, namespace=ns, label_selector=selector,
                    watch_timeout=timeout, metrics=metrics, cached_lists=mine is not None)
            for resource, writer, handler, selector in watched for ns in namespaces]

    # -- event handlers: they only enqueue ------------------------------------------------

    def _in_scope(self, key: ObjectKey) -> bool:
        """Whether the AppTask `key` is reconciled (see scope.py); an ignored namespace is
        logged the first time."""
        namespace = key.namespace
        why = self.scope.ignores(namespace)
        if why is not None and namespace not in self._ignoring:
            self._ignoring.add(namespace)
            log.info("ignoring the AppTasks in namespace %s (%s)", namespace, why)
        return why is None

    def _on_apptask(self, old: Cached | None, new: Cached | None) -> None:
        key = ObjectKey.of((new or old).obj)  # type: ignore[union-attr]
        drain = self.shard is not None and self.shard.marked(key, old, new)
        if drain or predicates.apptask_changed(old, new):
            if not self._in_scope(key):
                return
            self.reconciler.memories.seen(key, None if new is None else new.obj)
            if self.shard is not None and new is not None and self.shard.moved_in(old, new):
                self.reconciler.found_elsewhere(key, new.obj)
            if new is None:
                log.info("%s: AppTask %s", key, "deleted; its Deployment goes by garbage "
                         "collection" if self.shard is None else "gone from this shard "
                         "(deleted, or moved to another)", extra=logs.about(NAME, key))
                self._forget(key)
            self.queue.release(key)  # a new desired state is tried at once, even in backoff
            self.queue.add(key)

    def _on_deployment(self, old: Cached | None, new: Cached | None) -> None:
        if predicates.deployment_changed(old, new):
            self._enqueue_owner(new or old)

    def _on_service(self, old: Cached | None, new: Cached | None) -> None:
        if predicates.service_changed(old, new):
            self._enqueue_owner(new or old)

    def _enqueue_owner(self, child: Cached | None) -> None:
        """Enqueue the AppTask that controls a child, if any is served."""
        key = None if child is None else predicates.owner_key(child.obj)
        if key is not None and self._in_scope(key):
            self.queue.add(key)

    def _forget(self, key: ObjectKey) -> None:
        self.queue.forget(key)
        self.plans.pop(key, None)
        if self.shard is not None:
            self.shard.forget(key)

    # -- watches ---------------------------------------------------------------------------

    def start_watches(self, stop: threading.Event) -> list[threading.Thread]:
        return start_all(self.watchers, stop)

    def stop_watches(self) -> None:
        """Abort every open watch (their threads end since the stop event is set)."""
        for watcher in self.watchers:
            watcher.interrupt()

    def wait_synced(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for watcher in self.watchers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not watcher.synced.wait(remaining):
                return False
        return True

    @property
    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self.watchers)

    def resync(self) -> None:
        """Enqueue every cached AppTask (the periodic resync; decisions come from the cache)."""
        keys = [key for key in self.apptasks.keys() if self._in_scope(key)]
        log.debug("resync: %d AppTasks", len(keys))
        for key in keys:
            self.queue.add(key)

    # -- workers ---------------------------------------------------------------------------

    def start_workers(self) -> list[threading.Thread]:
        self.metrics.register_controller(NAME, self.config.workers)
        threads = [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
                   for i in range(self.config.workers)]
        for thread in threads:
            thread.start()
        return threads

    def stop_workers(self) -> None:
        """Stop handing out work: in-flight reconciles finish, queued keys are dropped."""
        self._stopping.set()
        self.queue.shut_down()

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            if self._stopping.is_set():
                self.queue.done(key)
                continue
            try:
                with self.metrics.active_worker(NAME):
                    self.process(key)
            finally:
                self.queue.done(key)

    def process(self, key: ObjectKey) -> Result:
        """Reconcile one key and requeue it as its Result says."""
        started = time.monotonic()
        with logs.reconciling(NAME, key):
            try:
                result = self._reconcile(key)
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker
                log.exception("%s: reconcile crashed", key)
                result = Result(Outcome.ERROR, error=_as_api_error(exc))
        self._requeue(key, result)
        if result.plan is not None or result.service_plan is not None:
            self._remember_plans(key, (result.plan, result.service_plan))
        self._count(result, time.monotonic() - started)
        return result

    def _reconcile(self, key: ObjectKey) -> Result:
        """Reconcile the AppTask `key`, unless it is not (or no longer) this shard's."""
        left = None if self.shard is None else self.shard.gate(key)
        if left is None:
            return self.reconciler.reconcile(key)
        if left.error is None:
            self._forget(key)
        return left

    def _count(self, result: Result, seconds: float) -> None:
        label = "error" if result.error else "requeue_after" if result.requeue_after else "success"
        self.metrics.reconcile_done(NAME, label, seconds)
        if result.outcome is not Outcome.SKIPPED:
            self.metrics.apply_outcome(result.outcome)
        if result.outcome is Outcome.CONFLICT:
            self.metrics.conflict()
        if result.fight_detected:
            self.metrics.fight_detected()
        if result.status_updated:
            self.metrics.status_updated()
        if result.precondition_dropped:
            self.metrics.create_precondition_fallback()

    def _requeue(self, key: ObjectKey, result: Result) -> None:
        """The one outcome switch."""
        if result.error is not None:
            self.queue.add_rate_limited(key, at_least=result.error.retry_after or 0.0)
        elif result.requeue_after:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
        else:
            self.queue.forget(key)

    def _remember_plans(self, key: ObjectKey,
                        plans: tuple[diff.Plan | None, diff.Plan | None]) -> None:
        """Keep the plans and log each one that changed."""
        before = self.plans.get(key, (None, None))
        self.plans[key] = plans
        for plan, was in zip(plans, before, strict=True):
            if plan is not None and plan != was:
                shown = plan.shown(self.config.show_values)
                log.info("dry-run %s%s", diff.headline(shown),
                         "".join(f"; {diff.render_op(op)}" for op in shown.patch))

    # -- one pass (--once, diff) -------------------------------------------------------------

    def run_once(self) -> dict[ObjectKey, Result]:
        """List everything, then reconcile every AppTask once, in this thread (no watches);
        the results by key, in key order. Statuses are written at once, failures included, and
        a vanished Deployment is re-created at once: no later reconcile will come."""
        self.reconciler.settling.settle = 0.0
        self.reconciler.degraded_after = 0.0
        self.reconciler.vanished_grace = 0.0
        for watcher in self.watchers:
            watcher.list_once()
        return {key: self.process(key) for key in sorted(self.apptasks.keys())
                if self._in_scope(key)}


def _as_api_error(exc: Exception) -> ApiError:
    return exc if isinstance(exc, ApiError) else ApiError(0, type(exc).__name__, str(exc))
