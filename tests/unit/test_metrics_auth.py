"""Secure metrics without a cluster: the bearer-token parsing, the bounded TTL cache, the
authorizer's decisions and caching (fake reviews, fake clock), the review bodies sent, and the
HTTPS /metrics endpoint answering 401 / 403 / 200 / 404."""

from __future__ import annotations

import copy
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import poll_until
from ssa_controller.runtime.backoff import TokenBucket
from ssa_controller.serving import metricsserver
from ssa_controller.serving.metrics import Metrics
from ssa_controller.serving.metrics_auth import (
    ACCESS_REVIEWS,
    ALLOWED_TTL,
    DENIED_TTL,
    TOKEN_REVIEWS,
    KubeReviews,
    MetricsAuthorizer,
    ReviewFailed,
    TtlCache,
    UserInfo,
    bearer_token,
)
from ssa_controller.serving.metricsserver import MetricsServer
from ssa_controller.serving.servingcert import self_signed_context
from ssa_controller.settings.config import ServerConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeReviews:
    """Tokens "reader" (may get /metrics), "other" and "user-*" (authenticated, may not);
    anything else is not authenticated. `fail_authn` / `fail_authz` make the reviews fail, and
    while `hold` is set an authentication waits for `release`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_authn = self.fail_authz = False
        self.hold, self.release = False, threading.Event()

    def authenticate(self, token: str) -> UserInfo | None:
        self.calls.append(("authenticate", token))
        if self.hold:
            self.release.wait(10)
        if self.fail_authn:
            raise ReviewFailed("403 Forbidden: tokenreviews is forbidden")
        if token in ("reader", "other") or token.startswith("user-"):
            return UserInfo(f"system:serviceaccount:monitoring:{token}", uid=f"uid-{token}")
        return None

    def authorize(self, user: UserInfo, verb: str, path: str) -> tuple[bool, str]:
        self.calls.append(("authorize", user.username))
        if self.fail_authz:
            raise ReviewFailed("connection refused")
        allowed = user.username.endswith(":reader") and (verb, path) == ("get", "/metrics")
        return allowed, "" if allowed else "no RBAC policy matched"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reviews() -> FakeReviews:
    return FakeReviews()


@pytest.fixture
def authorizer(reviews: FakeReviews, clock: FakeClock) -> MetricsAuthorizer:
    return MetricsAuthorizer(reviews, clock=clock, max_entries=4,
                             budget=TokenBucket(1000.0, 1000, clock=clock))


def check(authorizer: MetricsAuthorizer, token: str | None, path: str = "/metrics"
          ) -> tuple[int, str]:
    decision = authorizer.check(None if token is None else f"Bearer {token}", "get", path)
    return decision.status, decision.message


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER a.b-c_d", "a.b-c_d"),
    (None, None), ("", None), ("Bearer", None), ("Bearer ", None), ("Basic abc", None),
    ("Bearer a b", None),
])
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_user_info_round_trips_into_the_access_review() -> None:
    user = UserInfo.from_review({"username": "alice", "uid": "u1", "groups": ["g1", "g2"],
                                 "extra": {"scopes": ["a", "b"]}})
    assert user == UserInfo("alice", "u1", ("g1", "g2"), (("scopes", ("a", "b")),))
    assert user.review_fields() == {"user": "alice", "uid": "u1", "groups": ["g1", "g2"],
                                    "extra": {"scopes": ["a", "b"]}}
    assert UserInfo.from_review({"username": "bob"}).review_fields() == {"user": "bob",
                                                                         "groups": []}


# --------------------------------------------------------------------------- cache


def test_cache_entries_expire_at_their_own_ttl(clock: FakeClock) -> None:
    cache: TtlCache[str, int] = TtlCache(10, clock)
    cache.put("short", 1, 10.0)
    cache.put("long", 2, 60.0)
    clock.now += 9.9
    assert (cache.get("short"), cache.get("long")) == (1, 2)
    clock.now += 0.1
    assert (cache.get("short"), cache.get("long")) == (None, 2)
    assert len(cache) == 1
    clock.now += 50.0
    assert cache.get("long") is None and len(cache) == 0


def test_cache_is_bounded_and_evicts_the_least_recently_used(clock: FakeClock) -> None:
    cache: TtlCache[str, int] = TtlCache(2, clock)
    cache.put("a", 1, 60.0)
    cache.put("b", 2, 60.0)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3, 60.0)
    assert len(cache) == 2
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    with pytest.raises(ValueError):
        TtlCache(0, clock)


# --------------------------------------------------------------------------- decisions


def test_no_token_is_401_without_any_review(authorizer: MetricsAuthorizer,
                                            reviews: FakeReviews) -> None:
    assert check(authorizer, None) == (401, "Unauthorized")
    assert authorizer.check("Basic dXNlcjpwYXNz", "get", "/metrics").status == 401
    assert reviews.calls == []


def test_allowed_reader_is_reviewed_once_per_ttl(authorizer: MetricsAuthorizer,
                                                 reviews: FakeReviews, clock: FakeClock) -> None:
    assert check(authorizer, "reader") == (200, "")
    assert reviews.calls == [("authenticate", "reader"),
                             ("authorize", "system:serviceaccount:monitoring:reader")]
    clock.now += ALLOWED_TTL - 1
    assert check(authorizer, "reader")[0] == 200
    assert len(reviews.calls) == 2
    clock.now += 1
    assert check(authorizer, "reader")[0] == 200
    assert len(reviews.calls) == 4


def test_denied_user_is_403_and_cached_briefly(authorizer: MetricsAuthorizer,
                                               reviews: FakeReviews, clock: FakeClock) -> None:
    assert check(authorizer, "other") == (
        403, "Authorization denied for user system:serviceaccount:monitoring:other")
    assert check(authorizer, "other")[0] == 403
    assert len(reviews.calls) == 2
    clock.now += DENIED_TTL
    assert check(authorizer, "other")[0] == 403
    assert len(reviews.calls) == 4


def test_unauthenticated_tokens_are_never_cached_nor_evict_a_decision(
        authorizer: MetricsAuthorizer, reviews: FakeReviews) -> None:
    """Issue 26.3: bogus tokens, cached as denials, evicted Prometheus' decision from the cache
    (each token is new, so caching it saves nothing)."""
    assert check(authorizer, "reader")[0] == 200
    assert check(authorizer, "other")[0] == 403
    for i in range(10):
        assert check(authorizer, f"forged-{i}") == (401, "Unauthorized")
    assert check(authorizer, "forged-0")[0] == 401
    assert [c for c in reviews.calls if c[1].startswith("forged")] == [
        ("authenticate", f"forged-{i}") for i in (*range(10), 0)]
    calls = len(reviews.calls)
    assert check(authorizer, "reader")[0] == 200
    assert check(authorizer, "other")[0] == 403
    assert len(reviews.calls) == calls


def test_failed_reviews_are_never_cached(authorizer: MetricsAuthorizer,
                                         reviews: FakeReviews) -> None:
    reviews.fail_authn = True
    assert check(authorizer, "reader") == (401, "Authentication failed")
    reviews.fail_authn, reviews.fail_authz = False, True
    assert check(authorizer, "reader") == (
        500, "Authorization for user system:serviceaccount:monitoring:reader failed")
    reviews.fail_authz = False
    assert check(authorizer, "reader")[0] == 200  # reviewed again: nothing was cached
    assert [c[0] for c in reviews.calls] == ["authenticate", "authenticate", "authorize",
                                             "authenticate", "authorize"]


def test_decisions_are_per_token_verb_and_path(authorizer: MetricsAuthorizer,
                                               reviews: FakeReviews) -> None:
    assert check(authorizer, "reader")[0] == 200
    assert check(authorizer, "reader", "/debug")[0] == 403
    assert authorizer.check("Bearer reader", "post", "/metrics").status == 403
    assert check(authorizer, "other")[0] == 403
    assert len(reviews.calls) == 8


def test_cache_holds_at_most_max_entries_and_denials_never_evict_an_allowed_one(
        authorizer: MetricsAuthorizer, reviews: FakeReviews) -> None:
    assert check(authorizer, "reader")[0] == 200
    for i in range(10):
        assert check(authorizer, f"user-{i}")[0] == 403
    assert len(reviews.calls) == 22
    check(authorizer, "user-0")  # evicted by the later ones: reviewed again
    assert len(reviews.calls) == 24
    assert check(authorizer, "reader")[0] == 200  # still cached
    assert len(reviews.calls) == 24


def test_beyond_the_review_budget_a_scrape_is_429_at_once(reviews: FakeReviews,
                                                          clock: FakeClock) -> None:
    """Issue 24.5: each review waited for the budget's token, in its own thread."""
    authorizer = MetricsAuthorizer(reviews, clock=clock,
                                   budget=TokenBucket(1.0, 4, clock=clock))
    assert check(authorizer, "reader")[0] == 200  # 2 reviews
    assert check(authorizer, "forged-1")[0] == 401  # 1 review, 2 taken from the budget
    assert check(authorizer, "forged-2") == (429, "Too Many Requests: the review budget is "
                                                  "spent, retry later")
    assert check(authorizer, "reader")[0] == 200  # cached: no budget needed
    assert len(reviews.calls) == 3
    clock.now += 2.0
    assert check(authorizer, "forged-2")[0] == 401
    assert len(reviews.calls) == 4


def test_beyond_the_concurrent_reviews_a_scrape_is_503_at_once(
        authorizer: MetricsAuthorizer, reviews: FakeReviews) -> None:
    assert check(authorizer, "reader")[0] == 200
    reviews.hold = True
    answers: list[tuple[int, str]] = []
    held = [threading.Thread(target=lambda t=t: answers.append(check(authorizer, t)))
            for t in ("forged-1", "forged-2")]
    for thread in held:
        thread.start()
    poll_until(lambda: len(reviews.calls) == 4, timeout=5, message="two reviews under way")
    assert check(authorizer, "forged-3") == (503, "Service Unavailable: too many reviews "
                                                  "under way, retry later")
    assert check(authorizer, "reader")[0] == 200  # cached: answered meanwhile
    reviews.release.set()
    for thread in held:
        thread.join(5)
    assert answers == [(401, "Unauthorized")] * 2
    assert len(reviews.calls) == 4


# --------------------------------------------------------------------------- reviews sent


class FakeKube:
    """The part of ssa_controller.client.kube.Kube that KubeReviews uses."""

    def __init__(self, answers: dict[str, dict[str, Any] | ApiError]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.write_limiter: object = "the controller's limiter"

    def with_write_limit(self, limiter: object) -> FakeKube:
        clone = copy.copy(self)  # shares `sent` and `answers`, like Kube shares its pool
        clone.write_limiter = limiter
        return clone

    def request(self, method: str, path: str, *, body: dict[str, Any],
                timeout: float) -> dict[str, Any]:
        self.sent.append((method, path, body))
        answer = self.answers[path]
        if isinstance(answer, ApiError):
            raise answer
        return answer


def test_kube_reviews_send_token_and_access_reviews() -> None:
    kube = FakeKube({
        TOKEN_REVIEWS: {"status": {"authenticated": True, "user": {
            "username": "alice", "uid": "u1", "groups": ["system:authenticated"]}}},
        ACCESS_REVIEWS: {"status": {"allowed": True}},
    })
    reviews = KubeReviews(kube)  # type: ignore[arg-type]
    user = reviews.authenticate("t0k3n")
    assert user == UserInfo("alice", "u1", ("system:authenticated",))
    assert reviews.authorize(user, "get", "/metrics") == (True, "")
    assert kube.sent == [
        ("POST", TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                 "spec": {"token": "t0k3n"}}),
        ("POST", ACCESS_REVIEWS, {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "alice", "uid": "u1", "groups": ["system:authenticated"],
                     "nonResourceAttributes": {"path": "/metrics", "verb": "get"}}}),
    ]
    # Reviews are not the controller's writes: its own limiter is left alone, and they wait
    # for none (MetricsAuthorizer's budget never waits).
    assert kube.write_limiter == "the controller's limiter"
    assert reviews._kube.write_limiter is None  # noqa: SLF001


def test_kube_reviews_with_audiences_accept_only_tokens_for_one_of_them() -> None:
    kube = FakeKube({TOKEN_REVIEWS: {"status": {"authenticated": True, "audiences": ["m"],
                                                "user": {"username": "prometheus"}}}})
    reviews = KubeReviews(kube, audiences=("m", "metrics"))  # type: ignore[arg-type]
    assert reviews.authenticate("t0k3n") == UserInfo("prometheus")
    assert kube.sent[0][2]["spec"] == {"token": "t0k3n", "audiences": ["m", "metrics"]}
    # An authenticator that ignores audiences answers without them: not good enough.
    kube.answers[TOKEN_REVIEWS] = {"status": {"authenticated": True,
                                              "user": {"username": "prometheus"}}}
    assert reviews.authenticate("t0k3n") is None


def test_kube_reviews_not_authenticated_denied_and_failed() -> None:
    kube = FakeKube({
        TOKEN_REVIEWS: {"status": {"authenticated": False, "error": "invalid bearer token"}},
        ACCESS_REVIEWS: {"status": {"allowed": False, "reason": "no RBAC policy matched"}},
    })
    reviews = KubeReviews(kube)  # type: ignore[arg-type]
    assert reviews.authenticate("forged") is None
    assert reviews.authorize(UserInfo("bob"), "get", "/metrics") == (
        False, "no RBAC policy matched")
    kube.answers[TOKEN_REVIEWS] = ApiError(403, "Forbidden", "tokenreviews is forbidden")
    with pytest.raises(ReviewFailed, match="tokenreviews is forbidden"):
        reviews.authenticate("t0k3n")


# --------------------------------------------------------------------------- HTTPS endpoint


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def secure_server(reviews: FakeReviews) -> Iterator[MetricsServer]:
    metrics = Metrics()
    metrics.fight_detected()
    server = metricsserver.serve(metrics.registry, "127.0.0.1", free_port(),
                                 tls=self_signed_context(), authorizer=MetricsAuthorizer(reviews))
    assert server is not None
    yield server
    server.stop()


def get(url: str, token: str | None = None) -> tuple[int, str]:
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, context=unverified, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_https_metrics_answer_by_decision(secure_server: MetricsServer,
                                          reviews: FakeReviews) -> None:
    url = f"https://127.0.0.1:{secure_server.port}"
    assert get(f"{url}/metrics") == (401, "Unauthorized\n")
    assert get(f"{url}/metrics", "forged") == (401, "Unauthorized\n")
    status, body = get(f"{url}/metrics", "other")
    denied = "Authorization denied for user system:serviceaccount:monitoring:other\n"
    assert (status, body) == (403, denied)
    status, body = get(f"{url}/metrics", "reader")
    assert status == 200
    assert "ssa_controller_fights_detected_total 1.0" in body
    assert "process_resident_memory_bytes " in body
    calls = len(reviews.calls)
    assert get(f"{url}/other", "reader")[0] == 404
    assert len(reviews.calls) == calls  # unknown paths cost no review


def test_https_port_does_not_answer_plain_http(secure_server: MetricsServer) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{secure_server.port}/metrics", timeout=5)


def test_serve_configured_plain_http_or_disabled() -> None:
    metrics = Metrics()
    kube: Any = None  # never used without secureMetrics
    assert metricsserver.serve_configured(metrics.registry, ServerConfig(metrics_port=0),
                                         kube) is None
    server = metricsserver.serve_configured(metrics.registry, ServerConfig(
        bind_address="127.0.0.1", metrics_port=free_port(), secure_metrics=False), kube)
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as response:
            assert response.status == 200
    finally:
        server.stop()
