"""What travels between the client and the API server as its callers meet it: content types
and request bodies, Kubernetes times, and the errors that answers (or their absence) become.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from .resources import Obj
from .transport import TransportError

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TRANSPORT_ERROR = "TransportError"
"""The reason of the ApiError(0) of a request that got no whole answer."""


class ApiError(Exception):
    """A request the API server answered with an error status (or never answered: status 0)."""

    def __init__(self, status: int, reason: str, message: str,
                 body: Obj | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        self.retry_after = retry_after

    @property
    def details(self) -> Obj:
        """The answer's Status `details` ({} without them)."""
        return (self.body or {}).get("details") or {}

    @property
    def causes(self) -> list[Obj]:
        """The Status's `details.causes` ([] without them)."""
        return self.details.get("causes") or []


def namespace_closed(error: ApiError) -> bool:
    """Whether the server refused to create in a namespace that is being terminated (403 with
    the cause NamespaceTerminating: "unable to create new content in namespace X because it is
    being terminated", as v1.20 answers) or is gone (404 about the namespace itself). No retry
    can succeed there, and the deletion of everything in the namespace is on its way."""
    if error.status == 403:
        return (any(c.get("reason") == "NamespaceTerminating" for c in error.causes)
                or "because it is being terminated" in error.message)
    return error.status == 404 and error.details.get("kind") == "namespaces"


def rfc3339(moment: datetime | None = None) -> str:
    """A Kubernetes Time: RFC 3339, UTC, whole seconds: 2024-01-02T03:04:05Z."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime | None = None) -> str:
    """A Kubernetes MicroTime: RFC 3339, UTC, microseconds: 2024-01-02T03:04:05.000006Z."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


_YAML_UNSAFE = re.compile("[^\x20-\x7e\U00010000-\U0010ffff]")


def encode_body(body: Any, content_type: str | None) -> bytes:
    """The request body as JSON in UTF-8. An apply patch is read by the server's YAML parser,
    which does not allow every character raw and refuses the surrogate-pair escapes
    (\\ud83d\\ude00) of characters beyond U+FFFF: there such characters stay UTF-8 and every
    other one beyond printable ASCII is escaped."""
    data = orjson.dumps(body)
    if content_type != APPLY_PATCH or data.isascii():
        return data
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", data.decode()).encode()


def succeeded(status: int) -> bool:
    """Whether an answer's status is a success: 2xx (a 3xx is not: redirects are not followed,
    and an empty one is no success)."""
    return 200 <= status < 300


def failed_test(error: ApiError) -> bool:
    """Whether a JSON patch was refused because one of its `test` operations failed.
    kube-apiserver (v1.20.2) answers a JSON patch that does not apply to the object 422 Invalid
    with a generic message and no causes, where a patched object it refuses (validation) comes
    with causes naming the fields: so for a patch whose other operations always apply, a 422
    without causes is a failed test."""
    return error.status == 422 and not error.causes


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")  # names in lower case (transport.Response)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_from(status: int, data: bytes, headers: Mapping[str, str]) -> ApiError:
    """The ApiError of an answer that is no success: the server's Status (reason, message,
    body) if it sent one, else the start of its body; Retry-After in seconds."""
    try:
        body = orjson.loads(data) if data else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        return ApiError(status, str(body.get("reason", "")), str(body.get("message", "")), body,
                        _retry_after(headers))
    text = data[:200].decode("utf-8", "replace") or f"an answer {status} without a body" + (
        f" (Location: {headers['location']})" if "location" in headers else "")
    return ApiError(status, "", text, None, _retry_after(headers))


def unanswered(exc: TransportError) -> ApiError:
    """The ApiError(0) of a request that got no whole answer."""
    return ApiError(0, TRANSPORT_ERROR, str(exc))
