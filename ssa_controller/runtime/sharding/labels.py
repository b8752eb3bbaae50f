"""How an object's assignment is recorded and moved: two labels, and the patches that write
them. Pure.

- The shard label names the shard an object is assigned to. A shard watches only the objects
  that carry its name, and the children it applies carry the label too, so its caches hold
  its share alone.
- The drain label asks a live shard to give an object back: the shard stops working on it,
  forgets it, and acknowledges by removing both labels; only then does the sharder assign it
  again. A shard that is DEAD (see members) gives nothing back: its objects move directly.
- Every write is a JSON merge patch carrying the resourceVersion it was decided on, so a write
  that raced another (a shard's acknowledgement, a user's change, another sharder) is refused
  (409 Conflict) and decided again from what is there now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .members import State

Obj = dict[str, Any]


class Verdict(Enum):
    """What a shard does with an object it finds in its cache."""

    MINE = "mine"
    """Assigned to it: reconcile."""
    DRAIN = "drain"
    """Assigned to it and marked for draining: acknowledge, and forget it."""
    ELSEWHERE = "elsewhere"
    """Not (or no longer) assigned to it: leave it alone, and forget it."""


class Move(Enum):
    """What the sharder writes on an object."""

    ASSIGN = "assign"
    """Unassigned: the shard label of the ring's owner."""
    DRAIN = "drain"
    """Assigned to a LIVE shard that no longer owns it: the drain label."""
    MOVE = "move"
    """Assigned to a DEAD shard: the shard label of the ring's owner, at once."""


@dataclass(frozen=True)
class Action:
    move: Move
    shard: str
    """The shard the object goes to (ASSIGN, MOVE), or leaves (DRAIN)."""


@dataclass(frozen=True)
class ShardLabels:
    """The two label keys of a ring."""

    shard: str
    drain: str

    def selector(self, shard: str) -> str:
        """The label selector of the objects assigned to `shard`."""
        return f"{self.shard}={shard}"

    @property
    def assigned(self) -> str:
        """The label selector of every assigned object."""
        return self.shard

    @property
    def unassigned(self) -> str:
        """The label selector of the objects assigned to no shard."""
        return f"!{self.shard}"

    def verdict(self, labels: Mapping[str, str], me: str) -> Verdict:
        if labels.get(self.shard) != me:
            return Verdict.ELSEWHERE
        return Verdict.DRAIN if self.drain in labels else Verdict.MINE

    def decide(self, labels: Mapping[str, str], owner: str | None,
               state: Callable[[str], State]) -> Action | None:
        """What the sharder writes on an object with `labels` whose ring owner is `owner`
        (None: no shard at all), `state` telling how the current shard is."""
        current = labels.get(self.shard)
        if owner is None or current == owner:
            return None
        if not current:
            return Action(Move.ASSIGN, owner)
        found = state(current)
        if found is State.DEAD:
            return Action(Move.MOVE, owner)
        if found is State.LIVE and self.drain not in labels:
            return Action(Move.DRAIN, current)
        return None  # drained already (its shard acknowledges), or SUSPECT: wait

    def patch(self, action: Action, resource_version: str) -> Obj:
        """The merge patch that carries out `action` on the object at `resource_version`."""
        if action.move is Move.DRAIN:
            labels: dict[str, str | None] = {self.drain: "true"}
        else:
            labels = {self.shard: action.shard, self.drain: None}
        return _labelled(labels, resource_version)

    def acknowledgement(self, resource_version: str) -> Obj:
        """The shard's merge patch that gives a drained object back (both labels removed)."""
        return _labelled({self.shard: None, self.drain: None}, resource_version)


def _labelled(labels: Mapping[str, str | None], resource_version: str) -> Obj:
    return {"metadata": {"resourceVersion": resource_version, "labels": dict(labels)}}
