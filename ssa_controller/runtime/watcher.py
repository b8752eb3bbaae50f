"""Keeps a cache in sync with one resource by list-then-watch, like client-go's reflector.

Lists are paged from etcd, or (for a selector matching a small share) taken from the API
server's watch cache at the last version seen, as client-go's reflector takes them; a continue
token that expired while paging (410) makes the list be taken again in one piece, as client-go's
pager does (FullListIfExpired). Watches ask for bookmarks, carry a
server-side timeout and a deadline STALL_GRACE seconds later (a watch still open then is
stalled: aborted and re-opened), and resume from the last resourceVersion. A 410 Gone, an error,
an unexpected exception or a watch that ends at once is a failure: the watch is opened again
(after a 410 or an unexpected exception, from a new list) with capped, jittered exponential
backoff, reset by a healthy watch (a short cap while the resource is missing; a 429's
Retry-After if longer), so relists that keep failing are spaced out, as client-go's reflector
spaces them.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..client.kube import Kube
from ..client.resources import ListOptions, Obj, Resource
from ..client.watch import WatchStream
from ..client.wire import ApiError
from . import backoff
from .store import Cached, Writer

log = logging.getLogger(__name__)
ChangeHandler = Callable[[Cached | None, Cached | None], None]
LIST_PAGE = 500
BACKOFF_BASE = 0.5
"""First reconnect delay after a failure; doubled per further failure up to the cap."""
MISSING_CAP = 5.0
"""Backoff cap while the resource is not served (404: its CRD is not installed yet), so that a
newly installed CRD is picked up within seconds."""
SHORT_WATCH = 1.0
"""A watch that ends sooner than this without delivering an event counts as a failure."""
WATCH_JITTER = 1.5
"""A watch's server-side timeout is `watch_timeout` times a random factor in [1, WATCH_JITTER)."""
STALL_GRACE = 10.0
"""How long after its server-side timeout a watch may take to end before it counts as stalled.
kube-apiserver v1.20.2 sends nothing on an idle watch (no bookmark), so the server ending the
watch on time is the only sign of life of a quiet connection: a stall is noticed at most
watch_timeout * WATCH_JITTER + STALL_GRACE seconds after the watch began."""


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def describe_failure(exc: ApiError, server: str, resource: str) -> str:
    """A failed list or watch, said so that an operator sees what is missing: the server
    cannot be reached, the credentials are refused, a permission (the server's message names
    the user, verb and resource) or the resource itself (its CRD) is missing."""
    if exc.status == 0 and exc.reason == "TransportError":
        reason = _ERRNO.search(exc.message)
        detail = reason.group(1).strip() if reason else exc.message[:200]
        return f"cannot reach the API server at {server}: {detail}"
    if exc.status == 401:
        return (f"the API server at {server} refuses the credentials (401 Unauthorized): the "
                "token or client certificate is wrong, expired or revoked")
    if exc.status == 403:
        return f"missing RBAC permission (403 Forbidden): {exc.message}"
    if exc.status == 404:
        return f"{resource} are not served (404 Not Found): is the CRD installed?"
    if exc.status == 410:
        return f"{exc.message or 'resourceVersion too old'} (410 Gone): listing again"
    return str(exc)


def version_too_large(exc: ApiError) -> bool:
    """Whether a list at a resourceVersion was refused because the server's watch cache did
    not reach that version in time (504 with the cause ResourceVersionTooLarge, "Too large
    resource version"): another API server of an HA control plane answered the versions seen."""
    return exc.status == 504 and any(c.get("reason") == "ResourceVersionTooLarge"
                                     for c in exc.causes)


class WatchMetrics(Protocol):
    def watch_restarted(self, resource: str) -> None: ...
    def watch_relisted(self, resource: str) -> None: ...


class Watcher:
    """List+watch one resource (optionally one namespace, one label selector) into a cache,
    through its Writer (the watch is the only one that holds it)."""

    def __init__(self, kube: Kube, resource: Resource, writer: Writer, on_change: ChangeHandler,
                 *, namespace: str | None = None, label_selector: str | None = None,
                 watch_timeout: float = 30.0, metrics: WatchMetrics | None = None,
                 backoff_cap: float = 30.0, rng: random.Random | None = None,
                 cached_lists: bool = False) -> None:
        self.kube = kube
        self.resource = resource
        self.writer = writer
        self.on_change = on_change
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.metrics = metrics
        self.backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        self.cached_lists = cached_lists
        """List from the API server's watch cache, for a selector that matches a small share:
        filtered in the server's memory, where a paged list from etcd reads every object of
        the namespace to fill a page (a new shard, matching nothing yet, timed out so at
        20,000 AppTasks). As client-go's reflector does, the first list is at resourceVersion
        0 (any version: the watch from its resourceVersion makes up a cache a moment behind)
        and a relist at the last version seen, without a limit (v1.20 reads a limited list at
        a version from etcd), so that it never goes back in time; should the server have no
        cache that fresh (504 ResourceVersionTooLarge, or 410), one list from etcd."""
        self.synced = threading.Event()
        """Set once the first list has been stored."""
        self.name = f"{resource.plural}@{namespace or '*'}"
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()
        self._resume: str | None = None
        """The resourceVersion of the last list or delivered event: where the next watch starts
        (after a watch fails mid-stream too, so no event is delivered twice); None: list."""
        self._seen: str | None = None
        """The resourceVersion of the last list or delivered event, kept across relists:
        where a cache-listing watcher's relist starts (client-go's lastSyncResourceVersion)."""

    def run(self, stop: threading.Event) -> None:
        """List, then watch until `stop` is set; never raises."""
        failures = 0
        while not stop.is_set():
            retry_after = 0.0
            try:
                if self._resume is None:
                    self._resume = self._relist()
                if self._watch(stop):
                    failures = 0
                    continue
                problem = "watch ended at once without an event"
                cap = self.backoff_cap
            except ApiError as exc:
                if exc.status == 410:  # relisted next, after the backoff below
                    self._resume = None
                problem = describe_failure(exc, getattr(self.kube, "server", "?"),
                                           self.resource.plural)
                cap = MISSING_CAP if exc.status == 404 else self.backoff_cap
                retry_after = exc.retry_after or 0.0
            except Exception as exc:  # noqa: BLE001 - a watcher thread must never die
                log.exception("watch %s: unexpected error", self.name)
                problem = f"{type(exc).__name__}: {exc}"
                self._resume = None
                cap = self.backoff_cap
            if stop.is_set():
                return
            failures += 1
            delay = max(retry_after, backoff.exponential(BACKOFF_BASE, 2.0, cap, failures)
                        * self._rng.uniform(0.5, 1.0))
            log.warning("watch %s failed (%s); retrying in %.1fs", self.name, problem, delay)
            if self.metrics:
                self.metrics.watch_restarted(self.resource.plural)
            stop.wait(delay)

    def list_once(self) -> None:
        """Fill the cache with one list, without watching (one-pass runs)."""
        self._relist()

    def _params(self) -> ListOptions:
        return {"labelSelector": self.label_selector}

    def _first_page(self, from_etcd: bool = False) -> ListOptions:
        """A list's first request: paged from etcd, or from the watch cache (see
        `cached_lists`; at version 0 v1.20 answers it whole, newer servers may page it)."""
        if from_etcd or not self.cached_lists:
            return {**self._params(), "limit": LIST_PAGE}
        if self._seen is None:
            return {**self._params(), "resourceVersion": "0", "limit": LIST_PAGE}
        return {**self._params(), "resourceVersion": self._seen}

    def _relist(self) -> str:
        records: list[Cached] = []
        from_etcd = False
        params = self._first_page()
        while True:
            try:
                page = self.kube.list(self.resource.path(self.namespace), params)
            except ApiError as exc:
                if exc.status == 410 and "continue" in params:
                    log.info("list %s: the continue token expired while paging (%s); listing "
                             "in one piece", self.name, exc.message)
                    records, params = [], self._first_page(from_etcd)
                    params.pop("limit", None)
                    continue
                if params.get("resourceVersion", "0") != "0" and (
                        exc.status == 410 or version_too_large(exc)):
                    log.info("list %s: no cache as fresh as version %s (%s); listing from "
                             "etcd", self.name, params["resourceVersion"], exc.message)
                    from_etcd = True
                    records, params = [], self._first_page(from_etcd)
                    continue
                raise
            records += [self.writer.record(o) for o in page.get("items", [])]
            meta = page.get("metadata", {})
            del page  # each raw page goes once it is cached: a large list is not held twice
            if not meta.get("continue"):
                break
            params["continue"] = meta["continue"]
            params.pop("resourceVersion", None)  # (a continued list names no version)
        if self.metrics and self.synced.is_set():
            self.metrics.watch_relisted(self.resource.plural)
        resource_version = str(meta["resourceVersion"])
        for old, new in self.writer.replace(records, resource_version, self.namespace):
            self.on_change(old, new)
        self.synced.set()
        self._seen = resource_version
        return resource_version

    def _watch(self, stop: threading.Event) -> bool:
        """Watch from the resume point until the watch ends, moving the resume point with each
        event; return whether the watch was healthy: like client-go, a watch that ends within
        SHORT_WATCH seconds without delivering anything counts as a failure."""
        timeout = int(self.watch_timeout * self._rng.uniform(1.0, WATCH_JITTER))
        params = {**self._params(), "resourceVersion": self._resume,
                  "allowWatchBookmarks": True, "timeoutSeconds": timeout}
        started = time.monotonic()
        stream = self.kube.watch(self.resource.path(self.namespace), params,
                                 timeout=timeout + STALL_GRACE)
        with self._stream_lock:
            self._stream = stream
        if stop.is_set():  # interrupt() may have come before the stream was registered
            stream.close()
        delivered = False
        try:
            with stream:
                for event in stream:
                    self._resume = self._seen = self._apply(event) or self._resume
                    delivered = True
        finally:
            with self._stream_lock:
                self._stream = None
        return delivered or time.monotonic() - started >= SHORT_WATCH

    def _apply(self, event: Obj) -> str | None:
        """Store one watch event and report the change; return its resourceVersion."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise ApiError(int(obj.get("code", 0)), str(obj.get("reason", "")),
                           str(obj.get("message", "")), obj)
        if kind == "DELETED":
            self.on_change(*self.writer.delete(obj))
        elif kind in ("ADDED", "MODIFIED"):
            self.on_change(*self.writer.put(obj))
        version = obj.get("metadata", {}).get("resourceVersion")
        return None if version is None else str(version)

    def interrupt(self) -> None:
        """Abort the watch in progress; run() returns once its stop event is set."""
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()


def start_all(watchers: list[Watcher], stop: threading.Event) -> list[threading.Thread]:
    """Run each watcher in a thread of its own until `stop` is set; return the threads."""
    threads = [threading.Thread(target=w.run, args=(stop,), name=f"watch-{w.name}", daemon=True)
               for w in watchers]
    for thread in threads:
        thread.start()
    return threads
