"""The AppTask controller sharded (sharding.enabled; docs/scaling-out.md): this process's shard,
what it does with an AppTask before reconciling it, and the sharder of AppTasks.

A shard is named after the process's identity (`shard_name`), holds a Lease of that name
labelled `apptasks.example.com/ring: <leaderElection.leaseName>` (runner.py), and watches only
the AppTasks and Deployments labelled `apptasks.example.com/shard: <its name>`: its caches hold
its share alone, and what it applies carries the label (desired.child_metadata).

Before each reconcile, `Shard.gate` reads the AppTask's labels in the cache:
- its own: reconcile it;
- its own and marked `apptasks.example.com/drain`: acknowledge (remove both labels, by a patch
  preconditioned on the version that carried them), forget everything kept about it, and leave
  it. The work queue never hands one key to two workers, so no reconcile of it is in flight
  then; the acknowledgement's answer is recorded in the cache, so none starts afterwards, and
  the sharder assigns the AppTask elsewhere only once it sees the labels gone;
- anything else (moved, or assigned to nobody): forget it, and leave it.
A drain mark is worked at once (`marked`), even for an AppTask waiting for a retry.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .apptask import desired
from .apptask.outcomes import Outcome
from .client.kube import Kube
from .client.resources import APPTASKS
from .client.wire import MERGE_PATCH, ApiError
from .reconciler import Result, item_backoff
from .runtime.objectkey import ObjectKey
from .runtime.sharding.labels import ShardLabels, Verdict
from .runtime.sharding.ring import fnv1a64
from .runtime.sharding.sharder import Sharder, SharderMetrics
from .runtime.store import Cached, Store, WriteAnswers
from .runtime.watcher import WatchMetrics
from .settings.config import Config

log = logging.getLogger(__name__)
DRAIN_LABEL = "apptasks.example.com/drain"
RING_LABEL = "apptasks.example.com/ring"
LABELS = ShardLabels(desired.SHARD_LABEL, DRAIN_LABEL)
HOST_PART = 46
"""Characters of the host name kept in a shard's name (then '-' and 16 hex digits: 63)."""


def shard_name(identity: str) -> str:
    """The shard name of the process `identity` (hostname_uuid, see leader.default_identity):
    valid as a Lease name and a label value, unique per process: the host name in lowercase
    letters, digits and '-', then a hash of the whole identity."""
    host = re.sub(r"[^a-z0-9]+", "-", identity.rpartition("_")[0].lower()).strip("-")
    digest = f"{fnv1a64(identity):016x}"
    return f"{host[:HOST_PART].rstrip('-')}-{digest}" if host else digest


def ring_labels(config: Config) -> dict[str, str]:
    """The labels of the ring's shard Leases: the ring is named after the leader Lease."""
    return {RING_LABEL: config.leader_election.lease_name}


class ShardMetrics(Protocol):
    def drained(self, seconds: float) -> None:
        """This shard acknowledged a drain `seconds` after its mark arrived."""


@dataclass(frozen=True)
class Membership:
    """This process as a shard: its name, and where its drains are counted."""

    name: str
    metrics: ShardMetrics


def _labels(cached: Cached) -> Mapping[str, str]:
    labels: Mapping[str, str] = cached.obj["metadata"].get("labels") or {}
    return labels


class Shard:
    """One shard's gate on the AppTasks in its cache (see the module's docstring)."""

    def __init__(self, membership: Membership, kube: Kube, apptasks: Store,
                 apptask_answers: WriteAnswers, field_manager: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`apptasks`: the shard's cache, read-only; `apptask_answers`: where the answers of its
        acknowledgements go into it."""
        self.name = membership.name
        self._metrics = membership.metrics
        self._kube = kube
        self._apptasks = apptasks
        self._answers = apptask_answers
        self._params = {"fieldManager": field_manager}
        self._clock = clock
        self._lock = threading.Lock()
        self._marks: dict[ObjectKey, float] = {}
        """When each drain mark not yet acknowledged reached the cache."""

    @property
    def selector(self) -> str:
        """The label selector of this shard's AppTasks and Deployments."""
        return LABELS.selector(self.name)

    def marked(self, key: ObjectKey, old: Cached | None, new: Cached | None) -> bool:
        """Whether this change of the AppTask `key` brings it a drain mark (it must be worked
        at once)."""
        if new is None or LABELS.verdict(_labels(new), self.name) is not Verdict.DRAIN:
            return False
        if old is not None and LABELS.verdict(_labels(old), self.name) is Verdict.DRAIN:
            return False
        with self._lock:
            self._marks.setdefault(key, self._clock())
        return True

    @staticmethod
    def moved_in(old: Cached | None, new: Cached | None) -> bool:
        """Whether this change brings an AppTask that had a Deployment (its status names one)
        into this shard's cache: that Deployment carries the label of the shard it comes from,
        so this shard's cache does not hold it."""
        return old is None and new is not None and \
            bool(new.obj.get("status", {}).get("deploymentName"))

    def forget(self, key: ObjectKey) -> None:
        with self._lock:
            self._marks.pop(key, None)

    def gate(self, key: ObjectKey) -> Result | None:
        """None: the AppTask is this shard's to reconcile (or gone: the reconciler forgets it);
        else the Result of leaving it (acknowledging its drain first): the caller forgets it
        unless the acknowledgement failed (then it is retried)."""
        cached = self._apptasks.cached(key)
        if cached is None:
            return None
        verdict = LABELS.verdict(_labels(cached), self.name)
        if verdict is Verdict.MINE:
            return None
        if verdict is Verdict.DRAIN:
            return self._acknowledge(key, cached.obj)
        self.forget(key)
        return Result(Outcome.SKIPPED)

    def _acknowledge(self, key: ObjectKey, apptask: Mapping[str, Any]) -> Result:
        version = str(apptask["metadata"].get("resourceVersion", ""))
        try:
            answer = self._kube.patch(APPTASKS.path(key.namespace, key.name),
                                      LABELS.acknowledgement(version), MERGE_PATCH, self._params)
        except ApiError as exc:
            if exc.status == 404:
                self.forget(key)
                return Result(Outcome.SKIPPED)
            log.info("%s: acknowledging its drain failed (%s); trying again", key, exc)
            return Result(Outcome.ERROR, error=exc)
        self._answers.record_write(answer)
        with self._lock:
            marked = self._marks.pop(key, None)
        seconds = 0.0 if marked is None else self._clock() - marked
        self._metrics.drained(seconds)
        log.info("%s: drained: given back to the sharder %.2fs after its drain mark", key,
                 seconds)
        return Result(Outcome.SKIPPED)


def sharder(config: Config, kube: Kube, accept: Callable[[ObjectKey], bool],
            metrics: SharderMetrics, watch_metrics: WatchMetrics) -> Sharder:
    """The sharder of the AppTasks `accept` takes, in the configured namespaces."""
    election = config.leader_election
    return Sharder(kube, APPTASKS, LABELS, lease_namespace=election.namespace,
                   ring=ring_labels(config), lease_duration=election.lease_duration,
                   namespaces=config.namespaces or (None,), accept=accept,
                   field_manager=f"{config.field_manager}-sharder", period=config.resync.period,
                   backoff=item_backoff(config.backoff), metrics=metrics,
                   watch_metrics=watch_metrics, watch_timeout=config.timeouts.watch)
