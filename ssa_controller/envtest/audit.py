"""Read kube-apiserver's JSON audit log: the honest count of API requests, for tests and benchmarks.

The control plane logs at level Metadata without the RequestReceived stage, so each finished request
leaves exactly one `ResponseComplete` line. Open watches have only a `ResponseStarted` line until
they close, so they are not counted before then. Take `mark()` before the action under test and
count `since` that offset. `write_spans` and `overlapping` tell whether several identities wrote
at the same time (two leaders at once), from the server's own timestamps.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
COMPLETE = "ResponseComplete"


@dataclass(frozen=True)
class AuditEvent:
    """One finished request, as the audit log records it."""

    user: str
    user_agent: str
    verb: str
    resource: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    api_group: str | None
    code: int | None
    request_uri: str
    dry_run: bool
    timestamp: datetime
    """When the server completed the request."""
    received: datetime
    """When the server received the request."""

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def target(self) -> str:
        """resource[/subresource], or the path of a non-resource request such as /version."""
        if self.resource is None:
            return urlsplit(self.request_uri).path
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AuditEvent:
        ref = raw.get("objectRef") or {}
        uri = raw.get("requestURI", "")
        return cls(
            user=raw.get("user", {}).get("username", ""),
            user_agent=raw.get("userAgent", ""),
            verb=raw.get("verb", ""),
            resource=ref.get("resource"),
            subresource=ref.get("subresource"),
            namespace=ref.get("namespace"),
            name=ref.get("name"),
            api_group=ref.get("apiGroup"),
            code=(raw.get("responseStatus") or {}).get("code"),
            request_uri=uri,
            dry_run="All" in parse_qs(urlsplit(uri).query).get("dryRun", []),
            timestamp=datetime.fromisoformat(raw["stageTimestamp"]),
            received=datetime.fromisoformat(raw["requestReceivedTimestamp"]),
        )


@dataclass(frozen=True)
class AuditFilter:
    """Which events to keep; None means any. `user_agent` matches as a prefix."""

    user: str | None = None
    verb: str | None = None
    verbs: Collection[str] | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    user_agent: str | None = None
    dry_run: bool | None = None
    writes: bool = False

    def matches(self, event: AuditEvent) -> bool:
        exact = (
            ("user", self.user),
            ("verb", self.verb),
            ("resource", self.resource),
            ("subresource", self.subresource),
            ("namespace", self.namespace),
            ("name", self.name),
            ("dry_run", self.dry_run),
        )
        if any(want is not None and getattr(event, field) != want for field, want in exact):
            return False
        if self.verbs is not None and event.verb not in self.verbs:
            return False
        if self.user_agent is not None and not event.user_agent.startswith(self.user_agent):
            return False
        return not self.writes or event.is_write


class AuditLog:
    """Reader of one audit log file; offsets are byte offsets into it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def mark(self) -> int:
        """The current end of the log: pass it as `since` to see only what happens afterwards."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def events(self, since: int = 0) -> list[AuditEvent]:
        """Finished requests (stage ResponseComplete) logged after byte offset `since`."""
        return [
            AuditEvent.from_json(raw)
            for raw in self._records(since)
            if raw.get("stage") == COMPLETE
        ]

    def select(self, since: int = 0, **filters: Any) -> list[AuditEvent]:
        """The events after `since` matching the AuditFilter fields given as keywords."""
        wanted = AuditFilter(**filters)
        return [event for event in self.events(since) if wanted.matches(event)]

    def count(
        self,
        since: int = 0,
        *,
        user: str | None = None,
        verb: str | None = None,
        verbs: Collection[str] | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        user_agent: str | None = None,
        dry_run: bool | None = None,
        writes: bool = False,
    ) -> int:
        """How many finished requests after `since` match all the given filters."""
        return len(
            self.select(
                since,
                user=user,
                verb=verb,
                verbs=verbs,
                resource=resource,
                subresource=subresource,
                namespace=namespace,
                name=name,
                user_agent=user_agent,
                dry_run=dry_run,
                writes=writes,
            )
        )

    def summary(self, since: int = 0, **filters: Any) -> Counter[tuple[str, str, str]]:
        """Counts of matching finished requests by (user, verb, resource[/subresource] or path)."""
        return Counter((e.user, e.verb, e.target) for e in self.select(since, **filters))

    def _records(self, since: int) -> list[dict[str, Any]]:
        if since > self.mark():
            raise ValueError(f"{self.path} is shorter than offset {since}: rotated or truncated?")
        try:
            with self.path.open("rb") as log:
                log.seek(since)
                data = log.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


@dataclass(frozen=True)
class WriteSpan:
    """The period one identity wrote in: from receiving its first request to completing its last."""

    user: str
    first: datetime
    last: datetime
    requests: int

    def overlaps(self, other: WriteSpan) -> bool:
        return self.first < other.last and other.first < self.last


def write_spans(events: Iterable[AuditEvent]) -> list[WriteSpan]:
    """One span per user of `events` (the writes to judge), in the order they started writing."""
    spans: dict[str, WriteSpan] = {}
    for event in sorted(events, key=lambda e: e.received):
        span = spans.get(event.user)
        spans[event.user] = (
            WriteSpan(event.user, event.received, event.timestamp, 1)
            if span is None
            else WriteSpan(span.user, span.first, max(span.last, event.timestamp),
                           span.requests + 1)
        )
    return list(spans.values())


def overlapping(spans: Sequence[WriteSpan]) -> list[tuple[WriteSpan, WriteSpan]]:
    """The pairs of spans that overlap in time: identities that wrote during the same period."""
    return [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a.overlaps(b)]


def format_summary(summary: Counter[tuple[str, str, str]]) -> str:
    """A small table of a summary(), largest counts first, for benchmark output."""
    rows = [
        f"{count:6d}  {user:<40} {verb:<17} {target}"
        for (user, verb, target), count in summary.most_common()
    ]
    return "\n".join(
        [" count  user                                     verb              resource", *rows]
    )
