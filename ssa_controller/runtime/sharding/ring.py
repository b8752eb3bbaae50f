"""Which shard owns an object: a hash of its uid, and ranges of the hash space per shard. Pure.

The hash is FNV-1a 64 over the bytes of `metadata.uid`, as KEP-5866 (server-side sharded list
and watch, alpha in Kubernetes 1.36) defines it (k8s.io/apimachinery/pkg/sharding HashField), so
the ranges a shard owns are exactly what a `shardSelector` of `shardRange(object.metadata.uid,
'0x...', '0x...')` terms selects on a server that has it.

The 64-bit space is cut into PARTITIONS equal ranges (the hash's top 10 bits). Each partition
ranks the live shards by a score (a 64-bit mix of the partition's number and the shard's name)
and goes to the best-ranked shard that is not full, partitions taken in order: rendezvous
hashing with bounded loads, the bound PARTITIONS / shards (the remainder's partitions to the
first shards that reach it). So every shard owns the same number of partitions (+/- 1)
whatever the names; a shard that joins N others takes about 1/(N+1) of the partitions, one by
one from their owners, and one that leaves hands its own out; the bound moves a few more
(about 1% of them).
"""

from __future__ import annotations

from collections.abc import Iterable

HASH_BITS = 64
PARTITION_BITS = 10
PARTITIONS = 1 << PARTITION_BITS
PARTITION_WIDTH = 1 << (HASH_BITS - PARTITION_BITS)
_MASK = (1 << HASH_BITS) - 1
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_GOLDEN = 0x9E3779B97F4A7C15
"""2^64 / the golden ratio: spreads partition numbers over the 64 bits before they are mixed."""


def fnv1a64(text: str) -> int:
    """FNV-1a 64 of the UTF-8 bytes of `text` (Go's hash/fnv New64a)."""
    value = _FNV_OFFSET
    for byte in text.encode():
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


def _mix(value: int) -> int:
    """SplitMix64's finalizer: every bit of the input moves about half of the output's bits
    (FNV-1a alone does not: names that differ in their last bytes hash close together)."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def partition_of(uid: str) -> int:
    """The partition of the object with this uid."""
    return fnv1a64(uid) >> (HASH_BITS - PARTITION_BITS)


def _table(shards: tuple[str, ...]) -> tuple[str, ...]:
    """The owner of every partition (see the module's docstring)."""
    share, spare = divmod(PARTITIONS, len(shards))
    load = dict.fromkeys(shards, 0)
    seeds = [(fnv1a64(shard), shard) for shard in shards]
    owners = []
    for partition in range(PARTITIONS):
        salt = (partition * _GOLDEN) & _MASK
        ranked = sorted(((_mix(seed ^ salt), shard) for seed, shard in seeds), reverse=True)
        owner = next(shard for _, shard in ranked
                     if load[shard] < share or load[shard] == share and spare)
        if load[owner] == share:
            spare -= 1
        load[owner] += 1
        owners.append(owner)
    return tuple(owners)


class Ring:
    """The partitions of the hash space given to a set of shards; empty without shards.

    Equal sets of names make equal rings, in whatever order they come."""

    def __init__(self, shards: Iterable[str] = ()) -> None:
        self.shards = tuple(sorted(set(shards)))
        self._owners = _table(self.shards) if self.shards else ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ring) and other.shards == self.shards

    def __hash__(self) -> int:
        return hash(self.shards)

    def __repr__(self) -> str:
        return f"Ring({list(self.shards)!r})"

    def __len__(self) -> int:
        return len(self.shards)

    def owner(self, uid: str) -> str | None:
        """The shard that owns the object with this uid (None: no shard at all)."""
        return self._owners[partition_of(uid)] if self._owners else None

    def partitions(self, shard: str) -> int:
        """How many of the PARTITIONS `shard` owns."""
        return sum(1 for owner in self._owners if owner == shard)

    def ranges(self, shard: str) -> list[tuple[int, int]]:
        """The hash ranges `shard` owns, [start, end) with end up to 2^64, neighbours joined:
        what a KEP-5866 shardSelector of one shardRange() per range selects."""
        found: list[tuple[int, int]] = []
        for partition, owner in enumerate(self._owners):
            if owner != shard:
                continue
            start = partition * PARTITION_WIDTH
            if found and found[-1][1] == start:
                found[-1] = (found[-1][0], start + PARTITION_WIDTH)
            else:
                found.append((start, start + PARTITION_WIDTH))
        return found
