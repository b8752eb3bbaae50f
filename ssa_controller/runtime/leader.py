"""Lease-based leader election (coordination.k8s.io/v1) with client-go's algorithm.

Only the leader reconciles. `Election` is the pure decision logic of client-go's
tools/leaderelection `tryAcquireOrRenew`: it remembers the last lease record it observed
and the LOCAL clock reading at which that record last changed (`Observation`, which the
sharder's view of the shard Leases uses too), and judges expiry by that local time plus the
record's leaseDurationSeconds, never by the timestamps in the record (so clock skew between
replicas does not matter). `LeaderElector` does the I/O: it gets,
creates and updates the Lease through `Kube`, with optimistic concurrency (a PUT carries
the resourceVersion it read, so a 409 means another candidate won the race). Every lease
request is bounded by the time left before the deadline of its attempt (connect + read), so
a slow or unreachable server cannot hold a renewal past the renew deadline. A Lease may carry
labels (a shard Lease names its ring so).
"""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..client.kube import Kube
from ..client.resources import LEASES, Obj
from ..client.wire import ApiError, micro_time
from ..settings.config import LEADER_JITTER_FACTOR

log = logging.getLogger(__name__)


class LeaderMetrics(Protocol):
    def set_leader(self, name: str, leading: bool) -> None:
        """leader_election_master_status{name} = 1 while leading, else 0."""


def default_identity() -> str:
    """hostname + "_" + a random suffix, like controller-runtime's leader election id."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True)
class LeaseRecord:
    """The leader election fields of a Lease's spec (client-go's LeaderElectionRecord)."""

    holder: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(holder=spec.get("holderIdentity") or "",
                   lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=spec.get("acquireTime"),
                   renew_time=spec.get("renewTime"),
                   transitions=int(spec.get("leaseTransitions") or 0))

    def released(self, wall: str) -> LeaseRecord:
        """This lease given up: no holder, and leaseDurationSeconds=1 so that a candidate takes
        it at its next retry."""
        return LeaseRecord("", 1, wall, wall, self.transitions)

    def to_spec(self) -> Obj:
        spec: Obj = {"holderIdentity": self.holder,
                     "leaseDurationSeconds": self.lease_duration_seconds,
                     "leaseTransitions": self.transitions}
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


class Observation:
    """A lease record as last observed, and the LOCAL clock reading at which it was first seen
    (client-go's observedRecord and observedTime): expiry is judged by that reading plus the
    record's leaseDurationSeconds, never by the timestamps in the record. A record of None is a
    Lease seen missing. Pure; `now` arguments are readings of the observer's monotonic clock.
    """

    def __init__(self, record: LeaseRecord | None = None, seen_at: float = 0.0) -> None:
        # (record, local time it was first seen): one attribute, so readers on other
        # threads always see a consistent pair without taking a lock.
        self._seen: tuple[LeaseRecord | None, float] = (record, seen_at)

    @property
    def record(self) -> LeaseRecord | None:
        return self._seen[0]

    @property
    def seen(self) -> tuple[LeaseRecord | None, float]:
        """The record and the local time it was first seen, read together."""
        return self._seen

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """Remember `record`; restart its expiry countdown only if it changed since last seen."""
        if record != self.record:
            self._seen = (record, now)

    def reset(self, record: LeaseRecord, now: float) -> None:
        """`record` is current as of `now` (the observer wrote it)."""
        self._seen = (record, now)

    def valid(self, now: float) -> bool:
        """Whether the observed record has not expired, judged by when it was seen to change."""
        record, seen_at = self._seen
        return record is not None and seen_at + record.lease_duration_seconds > now


class Election:
    """Pure leader election state and decisions for one candidate (no I/O, no clock of its own).

    `now` arguments are readings of the candidate's local monotonic clock; `wall` arguments
    are MicroTime strings written into the Lease for humans (never used for decisions).
    """

    def __init__(self, identity: str, lease_duration: float) -> None:
        if not identity:
            raise ValueError("leader election identity must not be empty")
        self.identity = identity
        self.lease_duration_seconds = max(1, math.ceil(lease_duration))
        self._observation = Observation()

    @property
    def observed(self) -> LeaseRecord | None:
        return self._observation.record

    @property
    def is_leader(self) -> bool:
        observed = self.observed
        return observed is not None and observed.holder == self.identity

    def observe(self, record: LeaseRecord, now: float) -> None:
        """Remember `record`; restart its expiry countdown only if it changed since last seen."""
        self._observation.observe(record, now)

    def lease_valid(self, now: float) -> bool:
        """Whether the observed lease has not expired, judged by when we saw it change."""
        return self._observation.valid(now)

    def overdue(self, now: float, limit: float) -> bool:
        """Whether we lead but our record has gone unrenewed for more than `limit` seconds."""
        observed, seen_at = self._observation.seen
        return observed is not None and observed.holder == self.identity and now - seen_at > limit

    def candidate(self, current: LeaseRecord | None, now: float, wall: str) -> LeaseRecord | None:
        """The record to write to acquire or renew, given the lease as just read (None: missing).

        Returns None when another holder's lease is still valid (not acquired).
        """
        if current is None:
            return LeaseRecord(self.identity, self.lease_duration_seconds, wall, wall, 0)
        self.observe(current, now)
        if current.holder and self.lease_valid(now) and not self.is_leader:
            return None
        if self.is_leader:
            return LeaseRecord(self.identity, self.lease_duration_seconds,
                               current.acquire_time, wall, current.transitions)
        return LeaseRecord(self.identity, self.lease_duration_seconds, wall, wall,
                           current.transitions + 1)

    def written(self, record: LeaseRecord, now: float) -> None:
        """The API server accepted `record`: it is now what we observe, as of `now`."""
        self._observation.reset(record, now)

    def release_record(self, wall: str) -> LeaseRecord | None:
        """The record that gives the lease up (client-go ReleaseOnCancel), or None if not ours."""
        observed = self.observed
        if observed is None or observed.holder != self.identity:
            return None
        return observed.released(wall)


class LeaderElector:
    """Runs the election for one candidate against a Lease; see `run` and `release`.

    Callbacks run on the thread calling `run` and must return promptly (start workers,
    don't run them, and don't wait for anything): renewals wait for them. `on_stopped_leading`
    is called only when leadership is lost (renew deadline passed), never on a requested stop.
    Give it a client of its own (no shared write rate limit): renewals must not queue behind
    the controller's writes.
    """

    def __init__(self, kube: Kube, *, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 on_started_leading: Callable[[], None],
                 on_stopped_leading: Callable[[], None],
                 metrics: LeaderMetrics | None = None,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rng: random.Random | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        if not lease_duration > renew_deadline > LEADER_JITTER_FACTOR * retry_period > 0:
            raise ValueError(f"need lease_duration > renew_deadline > {LEADER_JITTER_FACTOR:g} * "
                             "retry_period > 0")
        self._kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._metrics = metrics
        self._labels = dict(labels or {})
        """Labels the Lease carries (a shard Lease names its ring so): set when it is created,
        put back by a renewal that finds them changed."""
        self._election = Election(identity, lease_duration)
        self._lease: Obj | None = None
        self._lock = threading.Lock()
        """Serialises lease requests (the run loop's attempts and release())."""
        self._released = threading.Event()
        self._leading = False

    @property
    def is_leader(self) -> bool:
        """True from acquiring the lease until losing or releasing it; never blocks."""
        return self._leading

    @property
    def holder(self) -> str:
        """The holder identity last observed ("" if none or unknown)."""
        observed = self._election.observed
        return observed.holder if observed else ""

    def healthy(self, tolerance: float = 20.0) -> bool:
        """False if we believe we lead but have not renewed for lease_duration + tolerance.

        client-go's HealthzAdaptor check: a leader stuck (e.g. deadlocked) past its lease
        must fail /healthz so it gets restarted.
        """
        return not self._election.overdue(self._clock(), self.lease_duration + tolerance)

    def run(self, stop: threading.Event | None = None) -> None:
        """Acquire, lead and renew until release(), leadership is lost, or `stop` is set.

        `stop` halts the loop without giving the lease up (to the others, like a killed
        replica); without it, only release() or a lost lease end the loop.
        """
        stop = self._released if stop is None else stop
        self._set_leading(False)
        if not self._acquire(stop):
            return
        log.info("became leader of lease %s/%s as %s", self.namespace, self.name, self.identity)
        self._set_leading(True)
        self._on_started()
        if self._renew(stop):
            return
        log.error("lost leader lease %s/%s: not renewed within %gs", self.namespace,
                  self.name, self.renew_deadline)
        self._set_leading(False)
        self._on_stopped()

    def release(self) -> bool:
        """Stop leading and give the lease up if we hold it (clean shutdown); run() stops.

        Writes an empty holderIdentity and leaseDurationSeconds=1 so that a follower takes
        over at its next retry. Returns False only if that update failed.
        """
        with self._lock:
            self._released.set()
            self._set_leading(False)
            record = self._election.release_record(micro_time(self._wall_clock()))
            if record is None or self._lease is None:
                return True
            try:
                self._write(record, self._clock() + self.renew_deadline)
            except ApiError as exc:
                log.error("failed to release lease %s/%s: %s", self.namespace, self.name, exc)
                return False
        log.info("released leader lease %s/%s", self.namespace, self.name)
        return True

    def try_acquire_or_renew(self, deadline: float) -> bool:
        """One attempt (client-go tryAcquireOrRenew), its requests all done by `deadline`
        (a reading of the elector's clock)."""
        with self._lock:
            if self._released.is_set():
                return False
            try:
                return self._attempt(deadline)
            except ApiError as exc:
                log.warning("leader election on %s/%s: %s", self.namespace, self.name, exc)
            except Exception:  # noqa: BLE001 - the election loop must never die silently
                log.exception("leader election on %s/%s failed", self.namespace, self.name)
            return False

    def _attempt(self, deadline: float) -> bool:
        lease = self._get(deadline)
        current = LeaseRecord.from_lease(lease) if lease is not None else None
        record = self._election.candidate(current, self._clock(), micro_time(self._wall_clock()))
        if record is None:
            return False
        if lease is None:
            self._create(record, deadline)
        else:
            self._lease = lease
            self._write(record, deadline)
        return True

    def _time_left(self, deadline: float) -> float:
        """The timeout of the next lease request: the seconds left before `deadline`."""
        left = deadline - self._clock()
        if left <= 0:
            raise ApiError(0, "Timeout", "no time left for a lease request before the deadline")
        return left

    def _halted(self, stop: threading.Event) -> bool:
        return stop.is_set() or self._released.is_set()

    def _acquire(self, stop: threading.Event) -> bool:
        """client-go acquire(): retry with jittered period until acquired or stopped."""
        log.info("attempting to acquire leader lease %s/%s", self.namespace, self.name)
        while not self._halted(stop):
            if self.try_acquire_or_renew(self._clock() + self.renew_deadline):
                return True
            jittered = self.retry_period * (1 + self._rng.random() * LEADER_JITTER_FACTOR)
            stop.wait(jittered)
        return False

    def _renew(self, stop: threading.Event) -> bool:
        """client-go renew(): renew every retry_period; False once a renewal misses its deadline."""
        while not self._halted(stop):
            if not self._renew_once(stop):
                return self._halted(stop)
            stop.wait(self.retry_period)
        return True

    def _renew_once(self, stop: threading.Event) -> bool:
        """Poll tryAcquireOrRenew every retry_period until success or renew_deadline passes."""
        deadline = self._clock() + self.renew_deadline
        while not self._halted(stop):
            if self._clock() >= deadline:
                return False
            if self.try_acquire_or_renew(deadline) and self._clock() < deadline:
                return True
            stop.wait(min(self.retry_period, max(0.0, deadline - self._clock())))
        return False

    def _get(self, deadline: float) -> Obj | None:
        try:
            return self._kube.request("GET", LEASES.path(self.namespace, self.name),
                                      timeout=self._time_left(deadline))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _create(self, record: LeaseRecord, deadline: float) -> None:
        metadata: Obj = {"name": self.name, "namespace": self.namespace}
        if self._labels:
            metadata["labels"] = self._labels
        body = {"apiVersion": LEASES.group_version, "kind": "Lease", "metadata": metadata,
                "spec": record.to_spec()}
        self._lease = self._kube.request("POST", LEASES.path(self.namespace), body=body,
                                         timeout=self._time_left(deadline))
        self._election.written(record, self._clock())

    def _write(self, record: LeaseRecord, deadline: float) -> None:
        """PUT `record` over the lease last read; 409 if it changed since (lost the race)."""
        assert self._lease is not None
        body = {**self._lease, "spec": record.to_spec()}
        metadata = self._lease.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if any(labels.get(k) != v for k, v in self._labels.items()):
            body["metadata"] = {**metadata, "labels": {**labels, **self._labels}}
        self._lease = self._kube.request("PUT", LEASES.path(self.namespace, self.name),
                                         body=body, timeout=self._time_left(deadline))
        self._election.written(record, self._clock())

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        if self._metrics is not None:
            self._metrics.set_leader(self.name, leading)
