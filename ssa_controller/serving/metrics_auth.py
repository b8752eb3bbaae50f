"""Who may scrape /metrics: controller-runtime's secure-metrics filter.

Each request's bearer token is authenticated with a TokenReview (authentication.k8s.io/v1) and
the user it names is authorized with a SubjectAccessReview (authorization.k8s.io/v1) for the
request's verb on the non-resource URL (`get` on `/metrics`), so the ClusterRole that lets a
scraper in is `nonResourceURLs: ["/metrics"], verbs: ["get"]`. Answers, as controller-runtime
gives them: 401 without a valid token, 403 when RBAC denies, 500 when authorization failed.

Decisions are cached per (token digest, verb, path) for a short time (allowed a minute, denied
ten seconds), in bounded least-recently-used caches, allowed and denied apart, so a scraper
costs two reviews a minute, not two a scrape. Neither a token the API server does not
authenticate nor a failed review is cached: each bogus token is new, and caching it would only
push a scraper's decision out. What callers with made-up tokens can cost is bounded instead:
at most MAX_REVIEWS decisions are reviewed at once and the reviews sent stay within a token
bucket (REVIEW_QPS, REVIEW_BURST); beyond either, the answer is 503 or 429 at once, never a
wait. `MetricsAuthorizer` and `TtlCache` are pure (reviews, budget and clock are given);
`KubeReviews` sends the reviews, optionally for a token audience of their own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ..client.kube import Kube
from ..client.wire import ApiError
from ..runtime.backoff import TokenBucket

log = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
ALLOWED_TTL = 60.0
DENIED_TTL = 10.0
MAX_ENTRIES = 1024
REVIEW_QPS, REVIEW_BURST = 5.0, 10
"""Reviews sent per second, and in a burst."""
REVIEWS_PER_DECISION = 2
"""A TokenReview and a SubjectAccessReview: what one decision may take from the budget."""
MAX_REVIEWS = 2
"""Decisions reviewed at once: the metrics server's other workers answer cached scrapes."""
REVIEW_TIMEOUT = 10.0

K = TypeVar("K")
V = TypeVar("V")


class ReviewFailed(Exception):
    """A review could not be carried out (the API server refused it or could not be reached)."""


@dataclass(frozen=True)
class UserInfo:
    """The user a TokenReview authenticated (authentication.k8s.io/v1 UserInfo)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_review(cls, user: Mapping[str, Any]) -> UserInfo:
        extra = user.get("extra") or {}
        return cls(str(user.get("username", "")), str(user.get("uid", "")),
                   tuple(user.get("groups") or ()),
                   tuple(sorted((k, tuple(v)) for k, v in extra.items())))

    def review_fields(self) -> dict[str, Any]:
        """The SubjectAccessReview spec fields naming this user."""
        fields: dict[str, Any] = {"user": self.username, "groups": list(self.groups)}
        if self.uid:
            fields["uid"] = self.uid
        if self.extra:
            fields["extra"] = {k: list(v) for k, v in self.extra}
        return fields


class Reviews(Protocol):
    def authenticate(self, token: str) -> UserInfo | None:
        """The token's user, or None if the token is not valid; raises ReviewFailed."""

    def authorize(self, user: UserInfo, verb: str, path: str) -> tuple[bool, str]:
        """(allowed, reason) for `verb` on the non-resource URL `path`; raises ReviewFailed."""


@dataclass(frozen=True)
class Decision:
    """The answer to one request: 200 lets it through, anything else is the HTTP error."""

    status: int
    message: str

    @property
    def allowed(self) -> bool:
        return self.status == 200


ALLOW = Decision(200, "")
UNAUTHORIZED = Decision(401, "Unauthorized")
AUTHENTICATION_FAILED = Decision(401, "Authentication failed")
THROTTLED = Decision(429, "Too Many Requests: the review budget is spent, retry later")
BUSY = Decision(503, "Service Unavailable: too many reviews under way, retry later")


class TtlCache(Generic[K, V]):
    """At most `max_entries` values, each until its own expiry; the least recently used goes
    first when full. Thread-safe."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    parts = (authorization or "").strip().split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


class MetricsAuthorizer:
    """Decides, with cached reviews within a budget, whether a request may read a
    non-resource URL."""

    def __init__(self, reviews: Reviews, *, clock: Callable[[], float] = time.monotonic,
                 allowed_ttl: float = ALLOWED_TTL, denied_ttl: float = DENIED_TTL,
                 max_entries: int = MAX_ENTRIES, budget: TokenBucket | None = None,
                 max_reviews: int = MAX_REVIEWS) -> None:
        self._reviews = reviews
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self._allowed: TtlCache[tuple[str, str, str], Decision] = TtlCache(max_entries, clock)
        self._denied: TtlCache[tuple[str, str, str], Decision] = TtlCache(max_entries, clock)
        self._budget = budget or TokenBucket(REVIEW_QPS, REVIEW_BURST, clock=clock)
        self._reviewing = threading.BoundedSemaphore(max_reviews)

    def check(self, authorization: str | None, verb: str, path: str) -> Decision:
        """The decision for a request with this Authorization header, verb and URL path."""
        token = bearer_token(authorization)
        if token is None:
            return UNAUTHORIZED
        key = (hashlib.sha256(token.encode()).hexdigest(), verb, path)
        cached = self._allowed.get(key) or self._denied.get(key)
        if cached is not None:
            return cached
        if not self._reviewing.acquire(blocking=False):
            return BUSY
        try:
            if not self._budget.try_take(REVIEWS_PER_DECISION):
                return THROTTLED
            decision, cacheable = self._review(token, verb, path)
        finally:
            self._reviewing.release()
        if cacheable and decision.allowed:
            self._allowed.put(key, decision, self._allowed_ttl)
        elif cacheable:
            self._denied.put(key, decision, self._denied_ttl)
        return decision

    def _review(self, token: str, verb: str, path: str) -> tuple[Decision, bool]:
        """The decision, and whether it may be cached (a failed review may not)."""
        try:
            user = self._reviews.authenticate(token)
        except ReviewFailed as exc:
            log.error("metrics: TokenReview failed: %s", exc)
            return AUTHENTICATION_FAILED, False
        if user is None:
            return UNAUTHORIZED, False
        try:
            allowed, reason = self._reviews.authorize(user, verb, path)
        except ReviewFailed as exc:
            log.error("metrics: SubjectAccessReview for %s failed: %s", user.username, exc)
            return Decision(500, f"Authorization for user {user.username} failed"), False
        if not allowed:
            log.debug("metrics: %s %s denied to %s: %s", verb, path, user.username, reason)
            return Decision(403, f"Authorization denied for user {user.username}"), True
        return ALLOW, True


class KubeReviews:
    """TokenReviews and SubjectAccessReviews through the controller's client.

    Reviews persist nothing and are not the controller's writes: they bypass its write limiter
    (a flood of scrapes must never delay a reconcile) and wait for no limiter at all
    (MetricsAuthorizer's budget answers 429 instead). With `audiences`, only a token issued for
    one of them is authenticated (the API server says which, or it did not check)."""

    def __init__(self, kube: Kube, audiences: tuple[str, ...] = ()) -> None:
        self._kube = kube.with_write_limit(None)
        self._audiences = audiences

    def _create(self, path: str, review: dict[str, Any]) -> dict[str, Any]:
        try:
            status = self._kube.request("POST", path, body=review, timeout=REVIEW_TIMEOUT)
        except ApiError as exc:
            raise ReviewFailed(str(exc)) from exc
        return dict(status.get("status") or {})

    def authenticate(self, token: str) -> UserInfo | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        status = self._create(TOKEN_REVIEWS, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
        if status.get("error"):
            log.debug("metrics: token not authenticated: %s", status["error"])
        if not status.get("authenticated"):
            return None
        if self._audiences and not set(self._audiences) & set(status.get("audiences") or ()):
            log.debug("metrics: token not issued for %s", ", ".join(self._audiences))
            return None
        return UserInfo.from_review(status.get("user") or {})

    def authorize(self, user: UserInfo, verb: str, path: str) -> tuple[bool, str]:
        status = self._create(ACCESS_REVIEWS, {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {**user.review_fields(),
                     "nonResourceAttributes": {"path": path, "verb": verb}}})
        if status.get("evaluationError"):
            log.debug("metrics: SubjectAccessReview evaluation error: %s",
                      status["evaluationError"])
        return bool(status.get("allowed")), str(status.get("reason", ""))
