"""Sharding (issue 22) on a control plane of its own, each replica with its own identity
(controller, controller-2, -3, -4, bound by manifests/rbac.yaml), so that the audit log tells
them apart.

The scenario: three replicas share APPTASKS AppTasks, each caching its share (1/3 +/- 15%) and
exactly the ones the ring gives it; a fourth joins and about a quarter move to it, each drained
by its shard before it is assigned again; one replica is killed (SIGKILL) and its AppTasks move
to the others, without a drain, and converge within a lease duration + 5 s. Over the whole run,
the audit log against the history of the AppTasks' labels (a watch of the test's own) shows
every reconcile write (Deployment applies, AppTask status) coming from the shard the AppTask was
assigned to at that moment, no AppTask written by two identities within a second, every label
write but a shard's acknowledgement coming from the leader (the sharder), and every move from a
live shard acknowledged by it before the AppTask was assigned again.
"""

from __future__ import annotations

import re
import secrets
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
from helpers import (
    CONTROLLER_NAMESPACE,
    HookedKube,
    apply_rbac,
    apptask,
    container,
    controller_client,
    failure_without,
    get_deployment,
    in_process,
    manifest_roles,
    put_apptask,
    rbac_objects,
    rule_triples,
)

from ssa_controller import crds
from ssa_controller.apptask.desired import SHARD_LABEL
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, LEASES
from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.envtest import Assets, ControlPlane, poll_until
from ssa_controller.envtest.audit import AuditEvent
from ssa_controller.runtime.backoff import ItemBackoff
from ssa_controller.runtime.leader import LeaseRecord
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.runtime.sharding.members import State
from ssa_controller.runtime.sharding.ring import PARTITION_WIDTH, PARTITIONS, Ring
from ssa_controller.runtime.sharding.sharder import Sharder
from ssa_controller.runtime.store import Cached, Writer
from ssa_controller.runtime.watcher import Watcher, start_all
from ssa_controller.serving.metrics import Metrics
from ssa_controller.sharded import DRAIN_LABEL, LABELS, RING_LABEL

USERS = ("controller", "controller-2", "controller-3", "controller-4")
NAMESPACE = "sharded"
LEASE = "ssa-controller"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 8, 6, 1
APPTASKS_COUNT = 1200
"""Enough that each shard's share of uniformly hashed uids stays within 15% of a third
(3.7 standard deviations; the ring's partitions are split evenly, +/- 1 of 1024)."""
CONFIG = {"namespaces": [NAMESPACE], "sharding": {"enabled": True},
          "leaderElection": {"enabled": True, "namespace": CONTROLLER_NAMESPACE,
                             "leaseName": LEASE, "leaseDuration": f"{LEASE_DURATION}s",
                             "renewDeadline": f"{RENEW_DEADLINE}s",
                             "retryPeriod": f"{RETRY_PERIOD}s"},
          "rateLimit": {"qps": 500, "burst": 500}, "workers": 8}
WALL, LATER = "2024-05-06T07:08:09.123456Z", "2024-05-06T07:08:19.123456Z"
CONVERGE = 120.0
"""How long the first convergence and the join may take on a loaded 2-core machine."""

Process = Any
"""conftest.ControllerProcess (conftest modules are not importable by name)."""


@pytest.fixture(scope="module")
def plane(assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane without kube-controller-manager (Deployments are never rolled out, so
    statuses settle without readiness churn), with the CRD, the controller namespace, the test
    namespace and the manifests' RBAC bound to the four users."""
    with ControlPlane(tmp_path_factory.mktemp("sharding"), users={u: () for u in USERS},
                      assets=assets) as plane:
        admin = plane.client(user_agent="tests")
        crds.install(admin)
        for name in (CONTROLLER_NAMESPACE, NAMESPACE):
            admin.create("/api/v1/namespaces", {"metadata": {"name": name}})
        apply_rbac(admin, rbac_objects(USERS))
        admin.close()
        yield plane


@pytest.fixture
def padmin(plane: ControlPlane) -> Iterator[Kube]:
    kube = plane.client(user_agent="tests", timeout=30.0)
    yield kube
    kube.close()


# --------------------------------------------------------------------------- observing


def shard_of(process: Process) -> str:
    """The shard name a process serves (from ssa_controller_shard_info)."""
    for key in process.metrics():
        found = re.match(r'ssa_controller_shard_info\{.*shard="([^"]+)"', key)
        if found:
            return found.group(1)
    raise AssertionError(f"{process.user} serves no ssa_controller_shard_info")


def cached(process: Process, resource: str) -> int:
    return int(process.metric(f'ssa_controller_cached_objects{{resource="{resource}"}}'))


def leaders(processes: list[Process]) -> list[Process]:
    return [p for p in processes
            if p.metric(f'leader_election_master_status{{name="{LEASE}"}}') == 1.0]


def live_shards(admin: Kube) -> set[str]:
    """The shard Leases of the ring held by the shard they name."""
    leases = admin.list(LEASES.path(CONTROLLER_NAMESPACE),
                        {"labelSelector": f"{RING_LABEL}={LEASE}"})["items"]
    return {lease["metadata"]["name"] for lease in leases
            if lease["spec"].get("holderIdentity") == lease["metadata"]["name"]}


class Observed:
    """The AppTasks and Deployments of the namespace as watches of the test's own see them, and
    the history of every AppTask's (shard, drained) labels."""

    def __init__(self, admin: Kube) -> None:
        self.history: dict[str, list[tuple[str | None, bool]]] = defaultdict(list)
        apptasks, deployments = Writer(), Writer()
        self.apptasks, self.deployments = apptasks.store, deployments.store
        self._stop = threading.Event()
        self._watchers = [
            Watcher(admin, APPTASKS, apptasks, self._changed, namespace=NAMESPACE,
                    watch_timeout=3600),
            Watcher(admin, DEPLOYMENTS, deployments, lambda old, new: None,
                    namespace=NAMESPACE, watch_timeout=3600)]
        self._threads = start_all(self._watchers, self._stop)

    def _changed(self, old: Cached | None, new: Cached | None) -> None:
        if new is None:
            return
        labels = new.obj["metadata"].get("labels") or {}
        state = (labels.get(SHARD_LABEL), DRAIN_LABEL in labels)
        states = self.history[str(ObjectKey.of(new.obj))]
        if not states or states[-1] != state:
            states.append(state)

    def converged(self, live: set[str], names: set[str]) -> dict[str, str] | None:
        """{AppTask name: shard} once every AppTask is assigned to a live shard, its Deployment
        carries that shard's label, and its status describes its generation (None: not yet)."""
        found = {}
        for key in self.apptasks.keys():
            item, deployment = self.apptasks.get(key), self.deployments.get(key)
            assert item is not None
            labels = item["metadata"].get("labels") or {}
            shard = labels.get(SHARD_LABEL)
            if (shard not in live or DRAIN_LABEL in labels or deployment is None
                    or deployment["metadata"]["labels"].get(SHARD_LABEL) != shard
                    or item.get("status", {}).get("observedGeneration") != 1):
                return None
            found[item["metadata"]["name"]] = shard
        return found if set(found) == names else None

    def __enter__(self) -> Observed:
        assert all(w.synced.wait(30) for w in self._watchers)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for watcher in self._watchers:
            watcher.interrupt()
        for thread in self._threads:
            thread.join(10)


@dataclass(frozen=True)
class Owned:
    """One period of an AppTask's assignment: its shard from the write that labelled it."""

    shard: str | None
    drained: bool
    since: datetime


def assignment_periods(history: dict[str, list[tuple[str | None, bool]]],
                       label_writes: dict[str, list[AuditEvent]]) -> dict[str, list[Owned]]:
    """Each AppTask's assignment periods: the k-th label state the watch saw after its
    creation, from the k-th accepted label write (from its receipt, as the server logged it:
    it commits before it completes, and a shard may act on the commit before the completion is
    logged)."""
    periods = {}
    for key, seen in history.items():
        states = seen[1:] if seen[0] == (None, False) else seen  # created unassigned
        writes = label_writes.get(key, [])
        assert len(writes) == len(states), (key, states, [(w.user, w.timestamp) for w in writes])
        periods[key] = [Owned(shard, drained, write.received)
                        for (shard, drained), write in zip(states, writes, strict=True)]
    return periods


def owner_at(periods: list[Owned], moment: datetime) -> Owned | None:
    current = None
    for period in periods:
        if period.since <= moment:
            current = period
    return current


# --------------------------------------------------------------------------- the scenario


def as_the_ring_says(admin: Kube, assignment: dict[str, str]) -> None:
    """Every AppTask is labelled with the shard the ring of the live shards gives its uid."""
    ring = Ring(live_shards(admin))
    wrong = {item["metadata"]["name"] for item in admin.list(APPTASKS.path(NAMESPACE))["items"]
             if ring.owner(item["metadata"]["uid"]) != assignment[item["metadata"]["name"]]}
    assert not wrong, f"not where the ring puts them: {sorted(wrong)[:10]}"


def partition_owners(ring: Ring) -> list[str]:
    """The owner of every partition, from the ranges each shard owns."""
    owners = [""] * PARTITIONS
    for shard in ring.shards:
        for start, end in ring.ranges(shard):
            owners[start // PARTITION_WIDTH:end // PARTITION_WIDTH] = \
                [shard] * ((end - start) // PARTITION_WIDTH)
    return owners


def changed_partitions(old: Ring, new: Ring) -> list[tuple[str, str]]:
    """(old owner, new owner) of every partition whose owner differs between two rings."""
    pairs = zip(partition_owners(old), partition_owners(new), strict=True)
    return [(was, now) for was, now in pairs if was != now]


def moved_by(admin: Kube, old: Ring, new: Ring) -> set[str]:
    """The AppTasks (by name) whose owner differs between two rings."""
    return {item["metadata"]["name"] for item in admin.list(APPTASKS.path(NAMESPACE))["items"]
            if old.owner(item["metadata"]["uid"]) != new.owner(item["metadata"]["uid"])}


def caches_hold_their_share(processes: list[Process], assignment: dict[str, str],
                            tolerance: float | None) -> None:
    """Each process caches exactly its shard's AppTasks and their Deployments, and (with a
    `tolerance`) within that fraction of an equal share."""
    counts = Counter(assignment.values())
    for process in processes:
        shard = shard_of(process)
        poll_until(lambda p=process, s=shard: cached(p, "apptasks") == counts[s]
                   and cached(p, "deployments") == counts[s], timeout=10,
                   message=f"{process.user} caching the {counts[shard]} AppTasks of {shard}")
        if tolerance is not None:
            share = len(assignment) / len(processes)
            assert abs(counts[shard] - share) <= tolerance * share, (process.user, counts)


def test_replicas_share_the_apptasks_and_hand_them_over_one_writer_at_a_time(
        plane: ControlPlane, padmin: Kube, controller: Callable[..., Process]) -> None:
    admin = padmin
    mark = plane.audit.mark()
    first = [controller(CONFIG, user=user, plane=plane) for user in USERS[:3]]
    poll_until(lambda: len(live_shards(admin)) == 3 and all(
        p.metric("ssa_controller_ring_shards") == 3 for p in first), timeout=30,
        message="three live shards, seen by every replica", ignore=(urllib3.exceptions.HTTPError,))
    shards = {p.user: shard_of(p) for p in first}
    (leader,) = leaders(first)
    names = {f"task-{i}" for i in range(APPTASKS_COUNT)}

    with Observed(admin) as seen:
        # three replicas: every AppTask assigned and converged, each cache its share
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: put_apptask(admin, apptask(n, NAMESPACE)), sorted(names)))
        before = poll_until(lambda: seen.converged(live_shards(admin), names),
                            timeout=CONVERGE, interval=1,
                            message="every AppTask assigned, applied and reported")
        print(f"{APPTASKS_COUNT} AppTasks converged on 3 shards in "
              f"{time.monotonic() - started:.1f}s: {Counter(before.values())}")
        as_the_ring_says(admin, before)
        caches_hold_their_share(first, before, tolerance=0.15)

        # a fourth joins: about a quarter move to it, each drained by its shard first
        writes_before = sharder_writes(leader)
        fourth = controller(CONFIG, user=USERS[3], plane=plane)
        shards[fourth.user] = shard_of(fourth)
        started = time.monotonic()
        after = poll_until(lambda: (found := seen.converged(live_shards(admin), names)) and
                           shards[fourth.user] in found.values() and found, timeout=CONVERGE,
                           interval=1, message="the AppTasks rebalanced onto four shards")
        joined = time.monotonic() - started
        moved = {n for n in names if before[n] != after[n]}
        print(f"the fourth shard took {len(moved)} AppTasks in {joined:.1f}s")
        as_the_ring_says(admin, after)
        # exactly the AppTasks of the partitions that changed owner moved: a quarter of the
        # partitions, the ring's bounded loads moving a few between the other three too
        rings = Ring(shards[p.user] for p in first), Ring(shards.values())
        assert moved == moved_by(admin, *rings)
        handed = Counter(new for old, new in changed_partitions(*rings))
        assert PARTITIONS / 4 - 1 <= handed[shards[fourth.user]] <= PARTITIONS / 4 + 1, handed
        assert sum(handed.values()) - handed[shards[fourth.user]] <= 0.05 * PARTITIONS, handed
        caches_hold_their_share([*first, fourth], after, tolerance=None)
        grown = poll_until(lambda: (w := sharder_writes(leader))["drain"] - writes_before["drain"]
                           >= len(moved) and w, timeout=10, message="drains counted")
        assert grown["drain"] - writes_before["drain"] == len(moved)
        assert grown["move"] == writes_before["move"]
        assert sum(p.metric("ssa_controller_shard_drains_total") for p in first) == len(moved)

        # one (not the leader) is killed: its AppTasks move at once after its lease expires
        victim = next(p for p in first if p is not leader)
        lost = {n for n, shard in after.items() if shard == shards[victim.user]}
        victim.stop(signal.SIGKILL)
        killed = time.monotonic()
        final = poll_until(lambda: (found := seen.converged(live_shards(admin), names)) and
                           shards[victim.user] not in found.values() and found,
                           timeout=LEASE_DURATION + 5, interval=0.25,
                           message="the killed shard's AppTasks moved and converged")
        print(f"{len(lost)} AppTasks of the killed shard moved and converged in "
              f"{time.monotonic() - killed:.1f}s")
        changed = {n for n in names if final[n] != after[n]}
        as_the_ring_says(admin, final)
        # the killed shard's partitions, and the few the bounded loads move between the others
        rings = Ring(shards.values()), Ring(live_shards(admin))
        assert lost <= changed == moved_by(admin, *rings)
        taken = Counter(old for old, new in changed_partitions(*rings))
        assert taken[shards[victim.user]] == rings[0].partitions(shards[victim.user]), taken
        assert sum(taken.values()) - taken[shards[victim.user]] <= 0.05 * PARTITIONS, taken
        survivors = [p for p in (*first, fourth) if p is not victim]
        caches_hold_their_share(survivors, final, tolerance=None)
        moves = poll_until(lambda: (w := sharder_writes(leader))["move"] - grown["move"]
                           >= len(lost) and w, timeout=10, message="moves counted")
        assert moves["move"] - grown["move"] == len(lost)
        history = dict(seen.history)

    check_the_audit_log(plane, mark, history, shards, leader.user, victim.user)


def sharder_writes(process: Process) -> dict[str, float]:
    return {move: process.metric(f'ssa_controller_sharder_writes_total{{move="{move}"}}')
            for move in ("assign", "drain", "move")}


def check_the_audit_log(plane: ControlPlane, mark: int,
                        history: dict[str, list[tuple[str | None, bool]]],
                        shards: dict[str, str], sharder: str, victim: str) -> None:
    """See the module's docstring; `victim`: the user of the killed replica."""
    events = [e for e in plane.audit.select(mark, namespace=NAMESPACE, writes=True)
              if e.user in USERS]
    label_writes: dict[str, list[AuditEvent]] = defaultdict(list)
    work: dict[str, list[AuditEvent]] = defaultdict(list)
    # in the order they were received: every label write carries the resourceVersion it was
    # decided on, so it was sent after the write before it committed (their completions may be
    # logged in the other order)
    for event in sorted(events, key=lambda e: e.received):
        key = f"{NAMESPACE}/{event.name}"
        if event.resource == "apptasks" and event.subresource is None:
            if event.code is not None and event.code < 400:
                label_writes[key].append(event)
        elif (event.resource, event.subresource) in (("deployments", None),
                                                     ("apptasks", "status")):
            work[key].append(event)
    periods = assignment_periods(history, label_writes)

    # every label write the sharder's (assign, drain, move), but the acknowledgement of a drain
    # by the shard drained; a move from one shard to another (without a drain) only off the
    # killed one
    wrong = []
    for key, owned in periods.items():
        for before, after, write in zip([None, *owned[:-1]], owned, label_writes[key],
                                        strict=True):
            if after.shard is None:
                fine = before is not None and before.drained and \
                    shards[write.user] == before.shard
            else:
                fine = write.user == sharder and (
                    before is None or before.shard in (None, after.shard, shards[victim]))
            if not fine:
                wrong.append(f"{key}: " + "; ".join(
                    f"{o.shard} {'drained ' if o.drained else ''}by {w.user} at "
                    f"{w.received.time()}" for o, w in zip(owned, label_writes[key],
                                                           strict=True)))
                break
    assert not wrong, "label writes out of turn:\n" + "\n".join(wrong)

    # every reconcile write from the shard the AppTask was assigned to then
    strays = []
    for key, writes in work.items():
        for write in writes:
            for moment in (write.received, write.timestamp):
                period = owner_at(periods[key], moment)
                if period is None or period.shard != shards[write.user]:
                    strays.append((key, write.user, write.verb, write.target, moment, period))
    assert not strays, f"writes by a shard the AppTask was not assigned to: {strays[:5]}"

    # a moved-in AppTask's Deployment (another shard's label, so not in the cache) is read
    # first, never created: no create-only apply answered 409
    refused = [(key, w.user, w.received) for key, writes in work.items() for w in writes
               if w.resource == "deployments" and w.code == 409]
    assert not refused, f"Deployments created again after a move: {refused[:5]}"

    # no AppTask written by two identities within a second of each other
    close = []
    for key, writes in work.items():
        ordered = sorted(writes, key=lambda e: e.received)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if a.user != b.user and (b.received - a.timestamp).total_seconds() < 1.0:
                close.append((key, a.user, a.timestamp, b.user, b.received))
    assert not close, f"written by two identities within a second: {close[:5]}"


# --------------------------------------------------------------------------- races


@pytest.fixture
def space(plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the module's control plane, and a ring (leader Lease) of its own."""
    name = f"{request.node.name.split('[')[0][5:30].replace('_', '-')}-{secrets.token_hex(3)}"
    admin = plane.client(user_agent="tests")
    admin.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    admin.delete(f"/api/v1/namespaces/{name}")
    admin.close()


def labelled(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    task = apptask(name, namespace)
    task["metadata"]["labels"] = labels
    return task


def labels_of(admin: Kube, namespace: str, name: str) -> dict[str, str]:
    found: dict[str, str] = admin.get(APPTASKS.path(namespace, name))["metadata"].get(
        "labels") or {}
    return found


def acknowledgements(kube: HookedKube, name: str) -> list[tuple[str, str, Any]]:
    """The label patches `kube` sent on the AppTask `name` (not its status)."""
    return [w for w in kube.writes
            if w[0] == "PATCH" and w[1].endswith(f"/apptasks/{name}")]


def test_a_drain_waits_for_the_reconcile_in_flight(plane: ControlPlane, padmin: Kube,
                                                   space: str, tmp_path: Path) -> None:
    """The drain mark arrives while the shard's apply of the AppTask is in flight: the
    acknowledgement goes out only after that reconcile finished, and nothing after it."""
    kube = controller_client(plane, tmp_path)
    shard = "shard-a"
    put_apptask(padmin, labelled("held", space, {SHARD_LABEL: shard}))
    entered, release = threading.Event(), threading.Event()

    def hold(send: Callable[[], Any]) -> Any:
        entered.set()
        assert release.wait(30)
        return send()
    kube.hook(lambda method, path, _: method == "PATCH" and path.endswith("/deployments/held"),
              hold)
    with in_process(kube, space, shard=shard) as controller:
        poll_until(entered.is_set, timeout=10, message="the apply in flight")
        padmin.patch(APPTASKS.path(space, "held"),
                     {"metadata": {"labels": {DRAIN_LABEL: "true"}}}, MERGE_PATCH)
        key = ObjectKey(space, "held")
        poll_until(lambda: DRAIN_LABEL in (controller.apptasks.get(key) or {}).get(
            "metadata", {}).get("labels", {}), timeout=10, message="the drain mark cached")
        assert acknowledgements(kube, "held") == []  # the reconcile still runs
        release.set()
        poll_until(lambda: SHARD_LABEL not in labels_of(padmin, space, "held"), timeout=10,
                   message="the drain acknowledged")
        about = [w[:2] for w in kube.writes if "/held" in w[1]]
        assert about[-1] == ("PATCH", APPTASKS.path(space, "held")), about
        assert ("PATCH", DEPLOYMENTS.path(space, "held")) in about[:-1], about
        assert DRAIN_LABEL not in labels_of(padmin, space, "held")
        assert controller.metrics.registry.get_sample_value(
            "ssa_controller_shard_drains_total") == 1


def test_an_acknowledgement_that_races_a_change_is_sent_again(
        plane: ControlPlane, padmin: Kube, space: str, tmp_path: Path) -> None:
    """The AppTask changes between the shard's read and its acknowledgement: the
    acknowledgement (preconditioned on the version read) is refused and sent again, and the
    drained shard never applies the change."""
    kube = controller_client(plane, tmp_path)
    shard = "shard-a"
    put_apptask(padmin, labelled("raced", space, {SHARD_LABEL: shard}))

    def change_first(send: Callable[[], Any]) -> Any:
        padmin.patch(APPTASKS.path(space, "raced"), {"spec": {"image": "nginx:1.26"}},
                     MERGE_PATCH)
        return send()
    with in_process(kube, space, shard=shard):
        poll_until(lambda: get_deployment(padmin, space, "raced"), timeout=10,
                   message="the Deployment applied")
        kube.hook(lambda method, path, _: method == "PATCH"
                  and path == APPTASKS.path(space, "raced"), change_first)
        padmin.patch(APPTASKS.path(space, "raced"),
                     {"metadata": {"labels": {DRAIN_LABEL: "true"}}}, MERGE_PATCH)
        poll_until(lambda: SHARD_LABEL not in labels_of(padmin, space, "raced"), timeout=10,
                   message="the drain acknowledged")
        assert len(acknowledgements(kube, "raced")) == 2
    found = get_deployment(padmin, space, "raced")
    assert found is not None and container(found)["image"] == "nginx:1.25"


def test_a_shard_is_fenced_only_once_a_fresh_read_shows_its_lease_unrenewed(
        plane: ControlPlane, padmin: Kube, space: str, tmp_path: Path) -> None:
    """The sharder's view says a shard's Lease went unrenewed for its duration (a stalled
    watch), but the Lease was renewed: read afresh, it is left alone. Unrenewed for a duration
    after that read, it is fenced (written released), so that its AppTasks may move."""
    now = [1000.0]
    ring = f"ring-{secrets.token_hex(3)}"
    kube = controller_client(plane, tmp_path, Kube)
    metrics = Metrics()
    sharder = Sharder(kube, APPTASKS, LABELS, lease_namespace=CONTROLLER_NAMESPACE,
                      ring={RING_LABEL: ring}, lease_duration=5, namespaces=[space],
                      accept=lambda key: True, field_manager="tests", period=60,
                      backoff=ItemBackoff(0.5, 2, 5, 0), metrics=metrics.sharding(ring, "me"),
                      clock=lambda: now[0])
    path = LEASES.path(CONTROLLER_NAMESPACE, f"victim-{ring}")
    name = f"victim-{ring}"
    lease = padmin.create(LEASES.path(CONTROLLER_NAMESPACE), {
        "metadata": {"name": name, "labels": {RING_LABEL: ring}},
        "spec": LeaseRecord(name, 5, WALL, WALL, 0).to_spec()})
    try:
        sharder.members.observe(name, LeaseRecord.from_lease(lease), now[0])  # then stalled
        padmin.update(path, {**lease, "spec": LeaseRecord(name, 5, WALL, LATER, 0).to_spec()})
        now[0] += 5
        assert sharder.members.due(now[0]) == [name]
        sharder._check_ring()
        assert padmin.get(path)["spec"]["holderIdentity"] == name  # renewed: left alone
        assert sharder.members.state(name, now[0]) is State.LIVE
        now[0] += 5
        sharder._check_ring()
        assert padmin.get(path)["spec"]["holderIdentity"] == ""  # unrenewed since: fenced
        assert sharder.members.state(name, now[0]) is State.DEAD
    finally:
        padmin.delete(path)
        kube.close()


def test_a_rebalance_queues_every_planned_move_while_workers_carry_some_out(
        plane: ControlPlane, padmin: Kube, space: str, tmp_path: Path) -> None:
    """Forced interleaving: another sharder worker carries out a planned move (taking it off
    the plan) while the rebalance is still queueing the plan's keys. Found at 20,000 AppTasks
    (bench_sharding.py): the rebalance failed with "dictionary changed size during iteration"
    and listed everything again, over and over."""
    now = [1000.0]
    ring = f"ring-{secrets.token_hex(3)}"
    kube = controller_client(plane, tmp_path, Kube)
    sharder = Sharder(kube, APPTASKS, LABELS, lease_namespace=CONTROLLER_NAMESPACE,
                      ring={RING_LABEL: ring}, lease_duration=5, namespaces=[space],
                      accept=lambda key: True, field_manager="tests", period=60,
                      backoff=ItemBackoff(0.5, 2, 5, 0), metrics=Metrics().sharding(ring, "me"),
                      clock=lambda: now[0])
    names = [f"moved-{i}" for i in range(4)]
    for name in names:
        put_apptask(padmin, labelled(name, space, {SHARD_LABEL: "gone"}))
    try:
        sharder.members.observe("me", LeaseRecord("me", 5, WALL, WALL, 0), now[0])
        sharder.members.observe("gone", LeaseRecord("", 5, WALL, WALL, 0), now[0])  # released
        sharder._check_ring()
        queued: list[ObjectKey] = []
        add = sharder.queue.add

        def add_while_another_worker_places(key: Any) -> None:
            if isinstance(key, ObjectKey):
                if not queued:
                    sharder._place(ObjectKey(space, names[-1]))
                queued.append(key)
            add(key)
        sharder.queue.add = add_while_another_worker_places  # type: ignore[method-assign]
        sharder._rebalance()
        assert sorted(k.name for k in queued) == names
        for key in queued:
            sharder._place(key)
        assert all(labels_of(padmin, space, n).get(SHARD_LABEL) == "me" for n in names)
    finally:
        sharder.stop()
        kube.close()


# --------------------------------------------------------------------------- least privilege


FAST = {"leaseDuration": "3s", "renewDeadline": "2s", "retryPeriod": "500ms"}
"""Lease timings of the sharding job: a released shard Lease is deleted 12 s after."""
STEP_TIMEOUT = 15.0


class ShardingJob:
    """One compact sharded run that needs every permission sharding adds: a shard syncs the
    ring's view (its Leases listed and watched), the sharder assigns a new AppTask within a
    second (a label patch), a second shard joins and AppTasks are drained to it (label patches
    by the sharder and by the first shard, which acknowledges), the second one stops (SIGTERM:
    its Lease released) and its AppTasks move back, and its released Lease is deleted.

    Each step raises AssertionError naming what failed; every poll also fails at once if a
    controller process exits."""

    def __init__(self, admin: Kube, start: Callable[..., Process], plane: ControlPlane,
                 namespace: str) -> None:
        self.admin, self.start, self.plane, self.namespace = admin, start, plane, namespace
        self.ring = f"ring-{secrets.token_hex(3)}"
        self.processes: list[Process] = []

    def config(self) -> dict[str, Any]:
        return {"namespaces": [self.namespace], "sharding": {"enabled": True},
                "leaderElection": {"enabled": True, "namespace": CONTROLLER_NAMESPACE,
                                   "leaseName": self.ring, **FAST}}

    def step(self, what: str, check: Callable[[], Any], timeout: float = STEP_TIMEOUT) -> Any:
        def probe() -> Any:
            for process in self.processes:
                code = process.proc.poll()
                if code is not None and process.user == "controller":
                    raise AssertionError(f"{what}: the controller exited with code {code}:\n"
                                         f"{process.log()[-1500:]}")
            return check()
        return poll_until(probe, timeout=timeout, interval=0.1, message=what,
                          ignore=(ApiError, urllib3.exceptions.HTTPError))

    def where(self) -> dict[str, str | None]:
        """{AppTask name: its shard}, once each Deployment carries its AppTask's shard label
        and no drain is pending (else empty)."""
        tasks = self.admin.list(APPTASKS.path(self.namespace))["items"]
        deployments = {d["metadata"]["name"]: d["metadata"]["labels"].get(SHARD_LABEL)
                       for d in self.admin.list(DEPLOYMENTS.path(self.namespace))["items"]}
        found = {}
        for task in tasks:
            labels = task["metadata"].get("labels") or {}
            name = task["metadata"]["name"]
            if DRAIN_LABEL in labels or deployments.get(name) != labels.get(SHARD_LABEL):
                return {}
            found[name] = labels.get(SHARD_LABEL)
        return found

    def creation_and_assignment(self, mark: int, name: str
                                ) -> tuple[list[AuditEvent], list[AuditEvent]] | None:
        """The admin's creation of AppTask `name` and the controller's label patch of it in
        the audit log since `mark`, once both are there."""
        writes = self.plane.audit.select(mark, resource="apptasks", name=name, writes=True)
        created = [e for e in writes if e.user == "admin"]
        assigned = [e for e in writes if e.user == "controller" and e.subresource is None]
        return (created, assigned) if created and assigned else None

    def run(self) -> None:
        admin, namespace = self.admin, self.namespace
        first = self.start(self.config(), user="controller", plane=self.plane, ready=False)
        self.processes.append(first)
        self.step("caches synced (/readyz)",
                  lambda: first.get(first.health_port, "/readyz")[0] == 200)
        one = shard_of(first)

        mark = self.plane.audit.mark()
        put_apptask(admin, apptask("solo", namespace))
        self.step("a new AppTask assigned",
                  lambda: labels_of(admin, namespace, "solo").get(SHARD_LABEL) == one)
        # (the API server logs a request once it has answered it: the log may lag a moment)
        (created,), (assigned,) = self.step("the creation and the assignment in the audit log",
                                            lambda: self.creation_and_assignment(mark, "solo"))
        took = (assigned.received - created.timestamp).total_seconds()
        assert took < 1.0, f"a new AppTask assigned within a second: took {took:.2f}s"

        names = {"solo", *(f"task-{i}" for i in range(11))}
        for name in sorted(names - {"solo"}):
            put_apptask(admin, apptask(name, namespace))
        self.step("AppTasks converged on the first shard",
                  lambda: self.where().keys() == names and set(self.where().values()) == {one})

        second = self.start(self.config(), user="controller-2", plane=self.plane, ready=False)
        self.processes.append(second)
        two = self.step("the second shard named", lambda: shard_of(second))
        self.step("AppTasks drained to the second shard",
                  lambda: set(self.where().values()) == {one, two})
        assert second.stop(signal.SIGTERM) == 0, second.log()[-1500:]
        self.step("the second shard's AppTasks moved back",
                  lambda: set(self.where().values()) == {one})
        self.step("the released shard Lease deleted",
                  lambda: not admin.list(LEASES.path(CONTROLLER_NAMESPACE), {
                      "fieldSelector": f"metadata.name={two}"})["items"], timeout=30)


@pytest.mark.sharding
def test_the_sharding_rbac_is_enough_for_the_whole_job(
        plane: ControlPlane, padmin: Kube, controller: Callable[..., Process],
        space: str) -> None:
    mark = plane.audit.mark()
    ShardingJob(padmin, controller, plane, space).run()
    refused = [e for e in plane.audit.select(mark) if e.user in USERS and e.code == 403]
    assert not refused, f"requests refused: {[(e.verb, e.target) for e in refused]}"


def test_sharding_rbac_names_every_group_resource_and_verb() -> None:
    roles = manifest_roles(sharding=True)
    assert {(role["kind"], name) for name, role in roles.items()} == {
        ("ClusterRole", "ssa-controller-sharding"), ("Role", "ssa-controller-shard-leases")}
    assert set(rule_triples(sharding=True)) == {
        ("ssa-controller-sharding", "example.com", "apptasks", "patch"),
        *(("ssa-controller-shard-leases", "coordination.k8s.io", "leases", verb)
          for verb in ("list", "watch", "delete"))}
    assert roles["ssa-controller-shard-leases"]["metadata"]["namespace"] == CONTROLLER_NAMESPACE
    for role in roles.values():
        for rule in role["rules"]:
            assert not rule.get("resourceNames") and not any(
                "*" in item for key in ("apiGroups", "resources", "verbs") for item in rule[key])


SHARDING_FAILURE = {
    ("example.com", "apptasks", "patch"): "a new AppTask assigned",
    ("coordination.k8s.io", "leases", "list"): "caches synced",
    ("coordination.k8s.io", "leases", "delete"): "the released shard Lease deleted",
}
"""Where the sharding job fails without each of the rules sharding adds (without `watch` on
Leases, the ring knows only the shards its first list found: the job fails at the first AppTask
or at the second shard, as the list came before or after the first shard's Lease)."""


@pytest.mark.sharding
@pytest.mark.parametrize("name,group,resource,verb", rule_triples(sharding=True),
                         ids=[f"{n}:{r}.{g}:{v}" for n, g, r, v in rule_triples(sharding=True)])
def test_every_sharding_rule_is_needed(plane: ControlPlane, padmin: Kube,
                                       controller: Callable[..., Process], space: str,
                                       name: str, group: str, resource: str, verb: str) -> None:
    role = manifest_roles(sharding=True)[name]
    job = ShardingJob(padmin, controller, plane, space)
    failure = failure_without(
        padmin, role, (group, resource, verb), role["metadata"].get("namespace") or space,
        job.run, lambda: [p.stop(signal.SIGKILL) for p in job.processes],
        f"the sharding job passed without {verb} on {resource} ({group}): the rule is "
        "unnecessary, remove it from manifests/rbac.yaml")
    expected = SHARDING_FAILURE.get((group, resource, verb))
    assert expected is None or expected in failure, failure
