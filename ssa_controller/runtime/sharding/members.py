"""Which shards of a ring are live, from their Leases as observed. Pure; times are passed in.

Every shard holds a Lease of its own, named after it, labelled with the ring's name, and renews
it as a leader renews the leader Lease (runtime/leader.py's LeaderElector, which exits the
process when a renewal misses its deadline). Each Lease's record is kept as an `Observation`,
the same as leader election's: expiry is judged by the LOCAL time a record was first seen plus
its leaseDurationSeconds, never by the timestamps in it, so clock skew does not matter.

A shard is
- LIVE while its Lease is held by the shard it names and valid: it gets objects;
- DEAD once its Lease is held by nobody (released at shutdown, or fenced by the sharder) or by
  another: its objects move at once, without a drain (it does not work any more);
- SUSPECT otherwise: its Lease held by itself but not renewed for a lease duration, or missing
  (never seen, or deleted) for one. It gets no new objects and keeps the ones it has until the
  sharder, having read the Lease afresh, fences it (`due`): a watch that stalls may hide
  renewals, a fresh read cannot.
"""

from __future__ import annotations

from enum import Enum

from ..leader import LeaseRecord, Observation


class State(Enum):
    LIVE = "live"
    SUSPECT = "suspect"
    DEAD = "dead"


class Members:
    """The shard Leases of one ring as observed: `observe` every change the Lease watch reports
    (None: deleted); `state`, `live` and `due` judge them at a time."""

    def __init__(self, lease_duration: float) -> None:
        self.lease_duration = lease_duration
        """How long a missing Lease is waited for (a shard re-creates a deleted one at its next
        renewal): the ring's own lease duration."""
        self._leases: dict[str, Observation] = {}

    def observe(self, name: str, record: LeaseRecord | None, now: float) -> None:
        """The Lease `name` now holds `record` (None: it is missing). A DEAD shard's Lease that
        goes (the sharder deletes it, see `removable`) is forgotten: nothing waits for it."""
        if record is None and self.state(name, now) is State.DEAD:
            self._leases.pop(name, None)
            return
        observation = self._leases.get(name)
        if observation is None:
            self._leases[name] = Observation(record, now)
        else:
            observation.observe(record, now)

    def notice(self, name: str, now: float) -> None:
        """An object names the shard `name`: if its Lease was never seen, it is missing from
        `now` on."""
        if name not in self._leases:
            self.observe(name, None, now)

    def record(self, name: str) -> LeaseRecord | None:
        observation = self._leases.get(name)
        return None if observation is None else observation.record

    def _deadline(self, name: str) -> float | None:
        """When the shard `name` turns SUSPECT unless its Lease changes (None: it is not
        LIVE, or not known)."""
        observation = self._leases.get(name)
        if observation is None:
            return None
        record, seen_at = observation.seen
        if record is None:
            return seen_at + self.lease_duration
        if record.holder != name:
            return None
        return seen_at + record.lease_duration_seconds

    def state(self, name: str, now: float) -> State:
        """LIVE, SUSPECT or DEAD (see the module's docstring); a shard whose Lease was never
        seen is SUSPECT (see `notice`)."""
        record = self.record(name)
        if record is not None and record.holder != name:
            return State.DEAD
        deadline = self._deadline(name)
        return State.LIVE if record is not None and deadline is not None and now < deadline \
            else State.SUSPECT

    def live(self, now: float) -> tuple[str, ...]:
        """The LIVE shards, in name order."""
        return tuple(sorted(n for n in self._leases if self.state(n, now) is State.LIVE))

    def dead(self, now: float) -> frozenset[str]:
        """The DEAD shards whose Leases are still there."""
        return frozenset(n for n in self._leases if self.state(n, now) is State.DEAD)

    def due(self, now: float) -> list[str]:
        """The SUSPECT shards whose time is up: held by themselves but unrenewed, or missing,
        for a lease duration. The sharder reads their Leases afresh and fences them."""
        return sorted(n for n in self._leases
                      if (deadline := self._deadline(n)) is not None and now >= deadline)

    def _released(self) -> dict[str, float]:
        """The Leases held by nobody, and when each was seen released."""
        seen = {name: observation.seen for name, observation in self._leases.items()}
        return {name: since for name, (record, since) in seen.items()
                if record is not None and not record.holder}

    def removable(self, now: float, grace: float) -> list[str]:
        """The shards whose Lease has been released (held by nobody) for `grace` seconds: their
        objects have moved long since, and a Lease per replica ever started would pile up."""
        return sorted(n for n, since in self._released().items() if now >= since + grace)

    def next_deadline(self, now: float, grace: float) -> float | None:
        """Seconds until the next LIVE or missing shard's time is up, or the next released
        Lease becomes removable after `grace` (None: nothing pending)."""
        pending = [d - now for n in self._leases
                   if (d := self._deadline(n)) is not None and d > now]
        pending += [since + grace - now for since in self._released().values()
                    if since + grace > now]
        return min(pending, default=None)
