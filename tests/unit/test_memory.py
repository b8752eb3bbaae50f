"""Unit tests for ssa_controller.memory: one Memory per AppTask uid, made and dropped by what the
AppTask watch shows, only looked up by reconciles."""

from __future__ import annotations

from typing import Any

from ssa_controller.memory import Memories, Memory
from ssa_controller.runtime.objectkey import ObjectKey

WEB, API, ELSEWHERE = ObjectKey("demo", "web"), ObjectKey("demo", "api"), ObjectKey("ops", "web")


def task(uid: str = "u1", generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "generation": generation}}


def test_the_watch_makes_a_memory_and_keeps_it_across_generations() -> None:
    memories = Memories()
    memories.seen(WEB, task())
    memory = memories.of(WEB, task())
    memory.status_at = 5.0
    memories.seen(WEB, task(generation=2))
    assert memories.of(WEB, task(generation=2)) is memory and WEB in memories


def test_another_uid_under_the_same_name_starts_afresh() -> None:
    """A relist after a watch gap shows the AppTask created again: no DELETED event between."""
    memories = Memories()
    memories.seen(WEB, task())
    memories.of(WEB, task()).status_at = 5.0
    memories.seen(WEB, task("u2"))
    assert memories.of(WEB, task("u2")) == Memory(WEB, "u2")
    assert memories.of(WEB, task("u2")) is memories.of(WEB, task("u2")), "remembered"
    assert len(memories) == 1


def test_gone_drops_the_memory() -> None:
    memories = Memories()
    memories.seen(WEB, task())
    memories.seen(WEB, None)
    memories.seen(WEB, None)  # twice is harmless
    assert WEB not in memories and len(memories) == 0


def test_a_lookup_never_makes_a_memory() -> None:
    """What a reconcile of an AppTask the watch does not show (any more), or of an older uid,
    remembers goes nowhere."""
    memories = Memories()
    memories.seen(WEB, task("u2"))
    for key, uid in ((API, "u1"), (WEB, "u1")):
        detached = memories.of(key, task(uid))
        detached.status_at = 5.0
        assert memories.of(key, task(uid)) == Memory(key, uid)
    assert len(memories) == 1 and memories.of(WEB, task("u2")) == Memory(WEB, "u2")


def test_closing_a_namespace_marks_the_apptasks_remembered_in_it() -> None:
    memories = Memories()
    for key in (WEB, API, ELSEWHERE):
        memories.seen(key, task())
    assert memories.close_namespace("demo") == 2
    assert memories.of(WEB, task()).closing and memories.of(API, task()).closing
    assert not memories.of(ELSEWHERE, task()).closing
    memories.seen(WEB, task("u9"))  # created again: the namespace was, too
    assert not memories.of(WEB, task("u9")).closing
