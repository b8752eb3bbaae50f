"""Unit tests for runtime.watcher: list-then-watch, bookmarks, 410 Gone, reconnect backoff.

The API server is replaced at the I/O boundary by a scripted stand-in that serves list pages
and watch streams in order; the real server's behaviour is covered by the integration tests.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

from ssa_controller.client.resources import APPTASKS
from ssa_controller.client.watch import WATCH_STALLED
from ssa_controller.client.wire import ApiError
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.runtime.store import Cached, Writer
from ssa_controller.runtime.watcher import MISSING_CAP, STALL_GRACE, WATCH_JITTER, Watcher

Obj = dict[str, Any]


def item(name: str, rv: str, generation: int = 1) -> Obj:
    return {"metadata": {"name": name, "namespace": "demo", "uid": f"u-{name}",
                         "resourceVersion": rv, "generation": generation}}


def page(rv: str, *items: Obj) -> Obj:
    return {"metadata": {"resourceVersion": rv}, "items": list(items)}


def event(kind: str, obj: Obj) -> Obj:
    return {"type": kind, "object": obj}


class Stream:
    """A finished watch: yields its events, then ends (or raises `error`)."""

    def __init__(self, events: list[Obj], error: Exception | None = None) -> None:
        self.events = events
        self.error = error

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def __iter__(self) -> Iterator[Obj]:
        yield from self.events
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        pass


class Stop(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


class ScriptedKube:
    """Answers list and watch calls from scripts; records what was asked. Once the watch
    script is used up it sets `stop`, which ends the watcher's run."""

    def __init__(self, lists: list[Obj | Exception], watches: list[Stream | Exception]) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.deadlines: list[float] = []
        self.stop = Stop()

    def list(self, path: str, params: dict[str, Any]) -> Obj:
        self.calls.append(("list", dict(params)))
        return self._next(self.lists)

    def watch(self, path: str, params: dict[str, Any], timeout: float) -> Stream:
        self.calls.append(("watch", dict(params)))
        self.deadlines.append(timeout)
        if not self.watches:
            self.stop.set()
            return Stream([])
        return self._next(self.watches)

    @staticmethod
    def _next(script: list[Any]) -> Any:
        answer = script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Metrics:
    def __init__(self) -> None:
        self.restarts = 0
        self.relists = 0

    def watch_restarted(self, resource: str) -> None:
        self.restarts += 1

    def watch_relisted(self, resource: str) -> None:
        self.relists += 1


def run(lists: list[Obj | Exception], watches: list[Stream | Exception], cached_lists: bool = False
        ) -> tuple[Watcher, ScriptedKube, Stop, Metrics, list[tuple[Obj | None, Obj | None]]]:
    kube = ScriptedKube(lists, watches)
    changes: list[tuple[Obj | None, Obj | None]] = []
    metrics = Metrics()
    watcher = Watcher(kube, APPTASKS, Writer(), lambda old, new: changes.append((old, new)),  # type: ignore[arg-type]
                      metrics=metrics, rng=random.Random(1), cached_lists=cached_lists)
    watcher.run(kube.stop)
    return watcher, kube, kube.stop, metrics, changes


def gone() -> Stream:
    return Stream([event("ERROR", {"kind": "Status", "code": 410, "reason": "Expired",
                                   "message": "too old resource version"})])


def test_list_then_watch_resumes_from_the_last_event_and_bookmark() -> None:
    watcher, kube, _, _, changes = run(
        [page("10", item("a", "9"))],
        [Stream([event("MODIFIED", item("a", "11", generation=2)),
                 event("BOOKMARK", {"metadata": {"resourceVersion": "15"}})]),
         Stream([event("ADDED", item("b", "16"))])])
    watches = [params for verb, params in kube.calls if verb == "watch"]
    assert [w["resourceVersion"] for w in watches] == ["10", "15", "16"]
    assert all(w["allowWatchBookmarks"] is True for w in watches)
    assert sorted(str(k) for k in watcher.writer.store.keys()) == ["demo/a", "demo/b"]
    assert watcher.synced.is_set()
    assert [(o and o.obj["metadata"]["resourceVersion"], n and n.obj["metadata"]["resourceVersion"])
            for o, n in changes] == [(None, "9"), ("9", "11"), (None, "16")]


def test_410_mid_stream_relists_and_notices_deletes() -> None:
    watcher, kube, stop, metrics, changes = run(
        [page("10", item("a", "9"), item("b", "9")), page("30", item("a", "25"))],
        [Stream([event("MODIFIED", item("a", "12"))] + gone().events), Stream([])])
    assert [verb for verb, _ in kube.calls] == ["list", "watch", "list", "watch", "watch"]
    assert watcher.writer.store.keys() == [ObjectKey("demo", "a")]
    old, new = changes[-1]
    assert old is not None and old.obj["metadata"]["name"] == "b" and new is None
    assert metrics.relists == 1
    after_410, after_short_watch = stop.waits  # the relist waited its backoff, as any failure
    assert 0.5 <= after_410 <= 1.0 and 1.0 <= after_short_watch <= 2.0


def test_relists_that_keep_meeting_410_are_backed_off_and_counted() -> None:
    """Issue 24 item 3: a watch answered 410 at once, again and again, relists with growing
    waits, not back to back (a fake client used to see 421,576 lists in one second)."""
    expired = ApiError(410, "Expired", "too old resource version: 5 (10)")
    _, kube, stop, metrics, _ = run([page("10")] * 6, [expired] * 5)
    assert [verb for verb, _ in kube.calls].count("list") == 6
    assert (metrics.relists, metrics.restarts) == (5, 5)
    assert all(low <= wait <= 2 * low
               for wait, low in zip(stop.waits, (0.5, 1, 2, 4, 8), strict=True)), stop.waits


def test_an_expired_continue_token_falls_back_to_one_unpaged_list() -> None:
    """client-go's pager (FullListIfExpired): the pages read so far are dropped and the list
    is taken again in one piece."""
    first = {"metadata": {"resourceVersion": "5", "continue": "next"},
             "items": [item("a", "1"), item("b", "2")]}
    expired = ApiError(410, "Expired", "The provided continue parameter is too old")
    watcher, kube, stop, metrics, changes = run(
        [first, expired, page("7", item("a", "1"), item("b", "2"), item("c", "6"))],
        [Stream([event("ADDED", item("d", "8"))])])
    lists = [params for verb, params in kube.calls if verb == "list"]
    assert [(p.get("limit"), p.get("continue")) for p in lists] == [
        (500, None), (500, "next"), (None, None)]
    assert sorted(str(k) for k in watcher.writer.store.keys()) == [
        "demo/a", "demo/b", "demo/c", "demo/d"]
    assert len(changes) == 4 and watcher.synced.is_set()
    assert (metrics.restarts, stop.waits) == (0, [])


def test_a_watcher_on_a_share_lists_from_the_watch_cache_and_continues_without_a_version(
) -> None:
    """A selector matching a small share (a shard's) is listed at resourceVersion 0, which the
    API server filters in its watch cache; should a newer server page that list, the next
    page names no version (the continue token holds it). The watch resumes from the list's."""
    first = {"metadata": {"resourceVersion": "5", "continue": "next"}, "items": [item("a", "1")]}
    watcher, kube, _, _, _ = run([first, page("5", item("b", "2"))], [], cached_lists=True)
    lists = [params for verb, params in kube.calls if verb == "list"]
    assert [(p.get("resourceVersion"), p.get("continue")) for p in lists] == [
        ("0", None), (None, "next")]
    assert [params["resourceVersion"] for verb, params in kube.calls if verb == "watch"] == ["5"]
    assert sorted(str(k) for k in watcher.writer.store.keys()) == ["demo/a", "demo/b"]


GONE = ApiError(410, "Expired", "too old resource version: 12 (30)")
TOO_LARGE = ApiError(504, "Timeout", "Too large resource version: 12, current: 9", {
    "code": 504, "reason": "Timeout", "details": {"causes": [
        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]}})


def test_a_watcher_on_a_share_relists_at_the_last_version_it_saw_never_an_older_one() -> None:
    """client-go's reflector relists at its last synced version: the watch cache then answers
    with a version not older than it (at 0 it may answer with any). Without a limit, which on
    v1.20 would make a list at a version be read from etcd."""
    watcher, kube, _, _, _ = run(
        [page("5", item("a", "1")), page("13", item("a", "12"))],
        [Stream([event("MODIFIED", item("a", "11")), event("BOOKMARK", item("", "12"))]),
         GONE], cached_lists=True)
    lists = [params for verb, params in kube.calls if verb == "list"]
    assert [(p.get("resourceVersion"), p.get("limit")) for p in lists] == [
        ("0", 500), ("12", None)]
    assert [params["resourceVersion"] for verb, params in kube.calls if verb == "watch"][-1] \
        == "13"
    assert watcher.writer.store.get(ObjectKey("demo", "a"))["metadata"]["resourceVersion"] == "12"


def test_a_share_relisted_where_no_cache_is_that_fresh_lists_once_from_etcd() -> None:
    """An API server whose watch cache does not reach the version (another server of an HA
    control plane answered the watch; 504 ResourceVersionTooLarge after it waited) or that no
    longer has it (410): one consistent list, paged, from etcd, as client-go's reflector does
    (isLastSyncResourceVersionUnavailable)."""
    for refusal in (TOO_LARGE, GONE):
        _, kube, _, metrics, _ = run(
            [page("5"), refusal, page("14", item("a", "14"))],
            [Stream([event("ADDED", item("a", "12"))]), GONE], cached_lists=True)
        lists = [params for verb, params in kube.calls if verb == "list"]
        assert [(p.get("resourceVersion"), p.get("limit")) for p in lists] == [
            ("0", 500), ("12", None), (None, 500)], refusal
        assert metrics.restarts == 1  # the watch's 410; the refused list was no failure


def test_a_share_whose_continue_token_expired_lists_whole_from_the_watch_cache() -> None:
    first = {"metadata": {"resourceVersion": "5", "continue": "next"}, "items": [item("a", "1")]}
    _, kube, _, _, _ = run([first, GONE, page("6", item("a", "1"), item("b", "2"))], [],
                           cached_lists=True)
    lists = [params for verb, params in kube.calls if verb == "list"]
    assert [(p.get("resourceVersion"), p.get("limit"), p.get("continue")) for p in lists] == [
        ("0", 500, None), (None, 500, "next"), ("0", None, None)]


def test_a_watcher_of_everything_relists_from_etcd_paged() -> None:
    """Leader-only mode: every list is a consistent read from etcd, paged."""
    _, kube, _, _, _ = run([page("5"), page("13")], [Stream([event("ADDED", item("a", "12"))]),
                                                     GONE])
    assert [(p.get("resourceVersion"), p.get("limit")) for verb, p in kube.calls
            if verb == "list"] == [(None, 500), (None, 500)]


def test_errors_back_off_exponentially_and_reset_after_a_healthy_watch() -> None:
    failure = ApiError(500, "InternalError", "boom")
    _, _, stop, metrics, _ = run(
        [page("10")],
        [failure, failure, failure, Stream([event("ADDED", item("a", "11"))]), failure])
    assert metrics.restarts == 4
    first, second, third, after_reset = stop.waits
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0 and 2.0 <= third <= 4.0
    assert 0.5 <= after_reset <= 1.0


def test_a_missing_resource_is_retried_on_a_short_cap() -> None:
    missing = ApiError(404, "NotFound", "the server could not find the requested resource")
    _, _, stop, _, _ = run([missing] * 12 + [page("1")], [Stream([])])
    assert len(stop.waits) >= 12
    assert max(stop.waits[:12]) <= MISSING_CAP


def test_a_watch_that_ends_at_once_counts_as_a_failure() -> None:
    _, _, stop, metrics, _ = run([page("10")], [Stream([]), Stream([]), Stream([])])
    assert metrics.restarts == 3
    first, second, third = stop.waits
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0 and 2.0 <= third <= 4.0


def test_an_unexpected_error_backs_off_counts_and_relists() -> None:
    _, kube, stop, metrics, _ = run(
        [page("10"), page("20")], [Stream([], error=KeyError("raw_object"))])
    assert [verb for verb, _ in kube.calls] == ["list", "watch", "list", "watch"]
    assert metrics.restarts >= 1 and stop.waits[0] >= 0.5


def test_a_watch_failing_mid_stream_resumes_after_its_last_event() -> None:
    stalled = ApiError(0, WATCH_STALLED, "the watch did not end within 40s of its start")
    watcher, kube, stop, metrics, changes = run(
        [page("10")],
        [Stream([event("ADDED", item("a", "11")), event("MODIFIED", item("a", "12"))],
                error=stalled),
         Stream([event("DELETED", item("a", "13"))])])
    watches = [params for verb, params in kube.calls if verb == "watch"]
    assert [w["resourceVersion"] for w in watches] == ["10", "12", "13"]
    assert [verb for verb, _ in kube.calls].count("list") == 1
    assert len(changes) == 3 and watcher.writer.store.keys() == []
    assert metrics.restarts == 1 and 0.5 <= stop.waits[0] <= 1.0


def test_a_watch_must_end_soon_after_its_server_side_timeout() -> None:
    """The deadline is the stall detector: kube-apiserver v1.20 sends nothing on idle watches."""
    _, kube, _, _, _ = run([page("10")], [Stream([event("ADDED", item(f"a{i}", str(11 + i)))])
                                          for i in range(20)])
    timeouts = [params["timeoutSeconds"] for verb, params in kube.calls if verb == "watch"]
    assert all(30 <= t < 30 * WATCH_JITTER for t in timeouts)
    assert len(set(timeouts)) > 1  # jittered
    assert kube.deadlines == [t + STALL_GRACE for t in timeouts]


def test_a_throttled_watch_waits_for_its_retry_after() -> None:
    throttled = ApiError(429, "TooManyRequests", "slow down", retry_after=7.0)
    _, _, stop, _, _ = run([page("10")], [throttled, Stream([event("ADDED", item("a", "11"))])])
    assert stop.waits[0] == 7.0


def test_a_paged_list_is_cached_page_by_page() -> None:
    """Each page becomes cache records before the next one is asked for, so a large list is
    never held twice, raw and cached."""
    log: list[str] = []

    class Recording(Writer):
        def record(self, obj: Obj) -> Cached:
            log.append(f"record {obj['metadata']['name']}")
            return super().record(obj)

    class Paging(ScriptedKube):
        def list(self, path: str, params: dict[str, Any]) -> Obj:
            log.append("list")
            return super().list(path, params)

    first = {"metadata": {"resourceVersion": "5", "continue": "next"},
             "items": [item("a", "1"), item("b", "2")]}
    kube = Paging([first, page("5", item("c", "3"))], [])
    cache = Recording()
    Watcher(kube, APPTASKS, cache, lambda old, new: None).list_once()  # type: ignore[arg-type]
    assert log == ["list", "record a", "record b", "list", "record c"]
    assert kube.calls[1][1]["continue"] == "next"
    assert sorted(str(k) for k in cache.store.keys()) == ["demo/a", "demo/b", "demo/c"]
