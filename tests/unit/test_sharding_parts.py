"""Sharding's pure parts: the hash (FNV-1a 64 test vectors), the ring's partitions (balance,
moves on joins and leaves, KEP-5866 ranges), the shards' liveness from their Leases as observed,
and the label protocol (what the sharder writes, what a shard does); and a sharded process's
wiring (its watches, which Lease its workers and its sharder follow, the release order)."""

from __future__ import annotations

import random
import re
import threading
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssa_controller.client.kube import Kube
from ssa_controller.runner import Process
from ssa_controller.runtime.leader import LeaseRecord
from ssa_controller.runtime.sharding.labels import Action, Move, ShardLabels, Verdict
from ssa_controller.runtime.sharding.members import Members, State
from ssa_controller.runtime.sharding.ring import (
    PARTITION_WIDTH,
    PARTITIONS,
    Ring,
    fnv1a64,
    partition_of,
)
from ssa_controller.settings.config import parse_config
from ssa_controller.sharded import LABELS, shard_name

WALL = "2024-05-06T07:08:09.123456Z"


# --------------------------------------------------------------------------- the hash


@pytest.mark.parametrize("text,digest", [
    # Go's hash/fnv New64a (and the FNV reference's test vectors)
    ("", 0xCBF29CE484222325),
    ("a", 0xAF63DC4C8601EC8C),
    ("foobar", 0x85944171F73967E8),
    ("chongo was here!\n", 0x46810940EFF5F915),
])
def test_fnv1a64_matches_the_reference_vectors(text: str, digest: int) -> None:
    assert fnv1a64(text) == digest


def test_the_hash_is_of_the_utf8_bytes() -> None:
    assert fnv1a64("ü") == fnv1a64("\u00fc") != fnv1a64("u")
    assert fnv1a64("ü") == ((((0xCBF29CE484222325 ^ 0xC3) * 0x100000001B3) % 2**64 ^ 0xBC)
                            * 0x100000001B3) % 2**64


def test_an_objects_partition_is_the_top_bits_of_its_uids_hash() -> None:
    uid = "6b9c2f0e-3a1d-4e8b-9c7f-0d2e4a6b8c1f"
    assert partition_of(uid) == fnv1a64(uid) // PARTITION_WIDTH
    assert 0 <= partition_of(uid) < PARTITIONS


# --------------------------------------------------------------------------- the ring


def names(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"ssa-controller-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}" for _ in range(count)]


def test_an_empty_ring_owns_nothing() -> None:
    ring = Ring()
    assert not ring and ring.owner("x") is None and ring.ranges("a") == []


def test_one_shard_owns_the_whole_space_as_one_range() -> None:
    ring = Ring(["only"])
    assert ring.owner("anything") == "only"
    assert ring.ranges("only") == [(0, 2**64)]


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=12), st.integers(min_value=0, max_value=10**6))
def test_every_shard_owns_the_same_number_of_partitions(count: int, seed: int) -> None:
    ring = Ring(names(count, seed))
    owned = [ring.partitions(s) for s in ring.shards]
    assert sum(owned) == PARTITIONS
    assert max(owned) - min(owned) <= 1


def test_the_ring_depends_on_the_set_of_names_only() -> None:
    shards = names(4)
    assert Ring(shards) == Ring(reversed(shards)) == Ring(shards + shards[:1])
    uids = [str(uuid.UUID(int=i * 7919)) for i in range(200)]
    forward, backward = Ring(shards), Ring(reversed(shards))
    assert [forward.owner(u) for u in uids] == [backward.owner(u) for u in uids]


def owners(ring: Ring) -> dict[int, str]:
    """Each partition's owner, from the shards' ranges."""
    return {p: shard for shard in ring.shards for start, end in ring.ranges(shard)
            for p in range(start // PARTITION_WIDTH, end // PARTITION_WIDTH)}


def moved(before: Ring, after: Ring) -> list[int]:
    """The partitions whose owner differs."""
    old, new = owners(before), owners(after)
    return [p for p in range(PARTITIONS) if old[p] != new[p]]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_a_joining_shard_takes_about_its_share_each_from_its_owner(count: int) -> None:
    for seed in range(5):
        shards = names(count + 1, seed)
        before, after = Ring(shards[:count]), Ring(shards)
        changed = moved(before, after)
        share = PARTITIONS / (count + 1)
        assert share - 1 <= len(changed) <= share * 1.15 + 4, (count, seed, len(changed))
        new = owners(after)
        taken = [p for p in changed if new[p] == shards[count]]
        assert len(taken) >= len(changed) - share * 0.15 - 4


@pytest.mark.parametrize("count", [2, 3, 4, 8])
def test_a_leaving_shard_hands_out_its_own_and_few_others(count: int) -> None:
    for seed in range(5):
        shards = names(count, seed)
        before, after = Ring(shards), Ring(shards[1:])
        changed = moved(before, after)
        own = before.partitions(shards[0])
        old = owners(before)
        others = [p for p in changed if old[p] != shards[0]]
        assert len(changed) - len(others) == own
        assert len(others) <= PARTITIONS * 0.04, (count, seed, len(others))


def test_ranges_are_joined_half_open_and_cover_the_space_once() -> None:
    ring = Ring(names(3))
    ranges = sorted(r for s in ring.shards for r in ring.ranges(s))
    assert ranges[0][0] == 0 and ranges[-1][1] == 2**64
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    for shard in ring.shards:
        own = ring.ranges(shard)
        assert all(a[1] < b[0] for a, b in zip(own, own[1:], strict=False))  # joined
        assert sum(end - start for start, end in own) == ring.partitions(shard) * PARTITION_WIDTH


def test_an_object_is_owned_by_the_shard_whose_ranges_hold_its_hash() -> None:
    ring = Ring(names(3))
    for i in range(300):
        uid = str(uuid.UUID(int=random.Random(i).getrandbits(128)))
        digest = fnv1a64(uid)
        (holder,) = [s for s in ring.shards
                     if any(start <= digest < end for start, end in ring.ranges(s))]
        assert ring.owner(uid) == holder


# --------------------------------------------------------------------------- members


def held(holder: str, duration: int = 10, renew: str = WALL) -> LeaseRecord:
    return LeaseRecord(holder, duration, WALL, renew, 0)


def test_a_shard_is_live_while_its_lease_changes_within_its_duration() -> None:
    members = Members(lease_duration=15)
    members.observe("a", held("a"), now=100.0)
    assert members.state("a", 109.9) is State.LIVE
    assert members.state("a", 110.0) is State.SUSPECT
    members.observe("a", held("a", renew="later"), now=109.0)
    assert members.state("a", 118.9) is State.LIVE
    assert members.live(118.9) == ("a",)


def test_expiry_is_judged_by_local_observation_not_by_the_records_times() -> None:
    members = Members(lease_duration=15)
    members.observe("a", held("a"), now=100.0)
    members.observe("a", held("a"), now=108.0)  # the same record again: no renewal
    assert members.state("a", 110.0) is State.SUSPECT
    assert members.due(110.0) == ["a"]


def test_a_released_lease_or_one_held_by_another_is_dead_at_once() -> None:
    members = Members(lease_duration=15)
    members.observe("a", held("a").released(WALL), now=100.0)
    members.observe("b", held("someone-else"), now=100.0)
    assert members.state("a", 100.0) is members.state("b", 100.0) is State.DEAD
    assert members.dead(100.0) == {"a", "b"} and members.live(100.0) == ()
    assert members.due(200.0) == []


def test_a_missing_lease_is_waited_for_one_lease_duration_then_due() -> None:
    members = Members(lease_duration=15)
    members.notice("ghost", now=100.0)
    members.notice("ghost", now=110.0)  # noticed again: the wait does not start over
    assert members.state("ghost", 114.9) is State.SUSPECT and members.due(114.9) == []
    assert members.due(115.0) == ["ghost"]
    members.observe("a", held("a"), now=100.0)
    members.observe("a", None, now=105.0)  # deleted: the shard re-creates it at its next renewal
    assert members.state("a", 119.9) is State.SUSPECT and "a" not in members.due(119.9)
    members.observe("a", held("a", renew="again"), now=107.0)
    assert members.state("a", 116.0) is State.LIVE


def test_the_deleted_lease_of_a_dead_shard_is_forgotten() -> None:
    members = Members(lease_duration=15)
    members.observe("a", held("a").released(WALL), now=100.0)
    members.observe("a", None, now=200.0)
    assert members.state("a", 200.0) is State.SUSPECT and members.due(10**6) == []


def test_released_leases_are_removable_after_the_grace() -> None:
    members = Members(lease_duration=15)
    members.observe("a", held("a").released(WALL), now=100.0)
    members.observe("b", held("b"), now=100.0)
    assert members.removable(159.9, grace=60) == []
    assert members.removable(160.0, grace=60) == ["a"]


def test_the_next_deadline_is_the_earliest_live_missing_or_removable_one() -> None:
    members = Members(lease_duration=15)
    assert members.next_deadline(0.0, grace=60) is None
    members.observe("a", held("a", duration=10), now=100.0)
    members.notice("ghost", now=98.0)
    members.observe("gone", held("gone").released(WALL), now=90.0)
    assert members.next_deadline(101.0, grace=60) == pytest.approx(9.0)
    assert members.next_deadline(109.0, grace=60) == pytest.approx(1.0)
    assert members.next_deadline(110.0, grace=60) == pytest.approx(3.0)  # a is due now
    assert members.next_deadline(113.0, grace=60) == pytest.approx(37.0)  # gone's removal
    assert members.next_deadline(150.0, grace=60) is None


# --------------------------------------------------------------------------- labels


KEYS = ShardLabels("example.com/shard", "example.com/drain")


def states(**found: State) -> dict[str, State]:
    return found


@pytest.mark.parametrize("labels,owner,found,action", [
    ({}, "b", {}, Action(Move.ASSIGN, "b")),
    ({"example.com/drain": "true"}, "b", {}, Action(Move.ASSIGN, "b")),
    ({"example.com/shard": "b"}, "b", {"b": State.LIVE}, None),
    ({"example.com/shard": "a"}, "b", {"a": State.LIVE}, Action(Move.DRAIN, "a")),
    ({"example.com/shard": "a", "example.com/drain": "true"}, "b", {"a": State.LIVE}, None),
    ({"example.com/shard": "a"}, "b", {"a": State.SUSPECT}, None),
    ({"example.com/shard": "a"}, "b", {"a": State.DEAD}, Action(Move.MOVE, "b")),
    ({"example.com/shard": "a", "example.com/drain": "true"}, "b", {"a": State.DEAD},
     Action(Move.MOVE, "b")),
    ({}, None, {}, None),
    ({"example.com/shard": "a"}, None, {"a": State.DEAD}, None),
])
def test_what_the_sharder_writes(labels: dict[str, str], owner: str | None,
                                 found: dict[str, State], action: Action | None) -> None:
    assert KEYS.decide(labels, owner, found.__getitem__) == action


def test_the_patches_carry_the_version_decided_on() -> None:
    assert KEYS.patch(Action(Move.ASSIGN, "b"), "42") == {"metadata": {
        "resourceVersion": "42",
        "labels": {"example.com/shard": "b", "example.com/drain": None}}}
    assert KEYS.patch(Action(Move.MOVE, "b"), "42") == KEYS.patch(Action(Move.ASSIGN, "b"), "42")
    assert KEYS.patch(Action(Move.DRAIN, "a"), "7") == {"metadata": {
        "resourceVersion": "7", "labels": {"example.com/drain": "true"}}}
    assert KEYS.acknowledgement("9") == {"metadata": {
        "resourceVersion": "9",
        "labels": {"example.com/shard": None, "example.com/drain": None}}}


@pytest.mark.parametrize("labels,verdict", [
    ({"example.com/shard": "me"}, Verdict.MINE),
    ({"example.com/shard": "me", "example.com/drain": "true"}, Verdict.DRAIN),
    ({"example.com/shard": "other"}, Verdict.ELSEWHERE),
    ({"example.com/shard": "other", "example.com/drain": "true"}, Verdict.ELSEWHERE),
    ({}, Verdict.ELSEWHERE),
])
def test_what_a_shard_does(labels: dict[str, str], verdict: Verdict) -> None:
    assert KEYS.verdict(labels, "me") is verdict


def test_selectors() -> None:
    assert KEYS.selector("me") == "example.com/shard=me"
    assert KEYS.assigned == "example.com/shard"
    assert KEYS.unassigned == "!example.com/shard"


# --------------------------------------------------------------------------- the AppTask side


LABEL_VALUE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


@pytest.mark.parametrize("identity", [
    "ssa-controller-7d9f8b6c5-x2k4p_6b9c2f0e-3a1d-4e8b-9c7f-0d2e4a6b8c1f",
    "A_Host.Example.COM_6b9c2f0e-3a1d-4e8b-9c7f-0d2e4a6b8c1f",
    "h" * 80 + "_6b9c2f0e-3a1d-4e8b-9c7f-0d2e4a6b8c1f",
    "no-underscore",
    "__",
])
def test_a_shard_name_is_a_lease_name_and_a_label_value(identity: str) -> None:
    name = shard_name(identity)
    assert len(name) <= 63 and re.match(LABEL_VALUE, name), name
    assert name.endswith(f"{fnv1a64(identity):016x}")


def test_shard_names_keep_the_host_and_differ_per_process() -> None:
    first = shard_name("ssa-controller-7d9f8b6c5-x2k4p_6b9c2f0e-3a1d-4e8b-9c7f-0d2e4a6b8c1f")
    second = shard_name("ssa-controller-7d9f8b6c5-x2k4p_0b9c2f0e-3a1d-4e8b-9c7f-0d2e4a6b8c1f")
    assert first.startswith("ssa-controller-7d9f8b6c5-x2k4p-") and first != second


def test_the_apptask_labels_are_the_controllers_own() -> None:
    assert LABELS == ShardLabels("apptasks.example.com/shard", "apptasks.example.com/drain")


# --------------------------------------------------------------------------- the process


def sharded_process(**config: Any) -> Process:
    return Process(parse_config({"sharding": {"enabled": True},
                                 "shutdownGracePeriod": "200ms", **config}),
                   Kube("https://127.0.0.1:9"), identity="host_6b9c2f0e-3a1d-4e8b")


class Elector:
    def __init__(self, name: str, order: list[str], leading: bool = True) -> None:
        self.name, self.order, self.is_leader = name, order, leading

    def release(self) -> bool:
        self.order.append(self.name)
        return True


def test_a_sharded_process_watches_its_share_only() -> None:
    process = sharded_process(namespaces=["team-a"])
    name = shard_name("host_6b9c2f0e-3a1d-4e8b")
    assert process.shard_name == name and process.sharder is not None
    selectors = sorted(w.label_selector or "" for w in process.controller.watchers)
    assert selectors == [*[f"app.kubernetes.io/managed-by=ssa-controller,"
                           f"apptasks.example.com/shard={name}"] * 2,  # Deployments, Services
                         f"apptasks.example.com/shard={name}"]
    assert process.controller.reconciler.shard == name
    assert sorted(w.label_selector or "" for w in process.sharder.watchers) == [
        "!apptasks.example.com/shard", "apptasks.example.com/ring=ssa-controller"]
    assert process._shard_elector().name == name
    # selectors matching a small share are listed from the watch cache, not paged from etcd
    assert all(w.cached_lists for w in process.controller.watchers)
    assert [w.label_selector for w in process.sharder.watchers if w.cached_lists] == [
        "!apptasks.example.com/shard"]


@pytest.mark.parametrize("config", [{"sharding": {"enabled": False}}, {"dryRun": True}])
def test_without_sharding_or_in_a_dry_run_a_process_sees_every_apptask(
        config: dict[str, Any]) -> None:
    process = sharded_process(**config)
    assert process.shard_name is None and process.sharder is None
    assert all(w.label_selector in (None, "app.kubernetes.io/managed-by=ssa-controller")
               and not w.cached_lists for w in process.controller.watchers)


def test_workers_follow_the_shard_lease_and_the_sharder_the_leader_lease() -> None:
    process = sharded_process()
    order: list[str] = []
    process.shard_elector = Elector("shard", order, leading=False)  # type: ignore[assignment]
    process.elector = Elector("leader", order)  # type: ignore[assignment]
    assert not process.may_lead() and process.may_shard()
    process.shard_elector.is_leader = True  # type: ignore[union-attr]
    process.elector.is_leader = False  # type: ignore[union-attr]
    assert process.may_lead() and not process.may_shard()


@pytest.mark.parametrize(("busy", "released"), [(0.05, ["shard", "leader"]), (5.0, [])])
def test_the_shard_lease_is_released_first_once_workers_and_sharder_finished(
        busy: float, released: list[str]) -> None:
    process = sharded_process()
    order: list[str] = []
    process.shard_elector = Elector("shard", order)  # type: ignore[assignment]
    process.elector = Elector("leader", order)  # type: ignore[assignment]
    done = threading.Event()
    process.sharding = [threading.Thread(target=done.wait, args=(busy,), daemon=True)]
    process.sharding[0].start()
    process.shutdown()  # with a grace period of 200 ms
    done.set()
    assert order == released
