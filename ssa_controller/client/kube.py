"""The client's facade: `Kube`, a JSON client for one API server with one identity.

Objects travel as plain dicts (resources.Obj). Every request goes through a transport
(transport.Transport: the built-in http1, or urllib3; see pools), is reported to an optional
observer (for metrics), and its server warnings are logged once; writes pass an optional rate
limiter first; every response body is read or released so its connection goes back to the pool.
Credentials are asked for before every request, so rotating ones are honoured (see credentials,
kubeconfig, serviceaccount).

Liveness: every request is bounded by `request_timeout` from its connect to its last byte,
every watch's opening by it too and the whole watch by a deadline (a watch still open then is
stalled; the idle pooled connections are dropped with it), and every connection has TCP
keepalive, so a silent stall or a dead path never hangs the controller.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlencode, urlsplit

import orjson

from . import credentials, kubeconfig, serverwarnings
from .credentials import ClientCertificate, Credentials
from .pools import BUILTIN, Pools, transport_factory
from .resources import ListOptions, Obj, ObjectList
from .transport import TransportError
from .watch import WatchStream
from .wire import APPLY_PATCH, encode_body, error_from, succeeded, unanswered

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RequestObserver = Callable[[str, int, float], None]
"""Called after every request with (HTTP method, status code or 0 on transport error, seconds)."""


class _Status(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


_Answer = TypeVar("_Answer", bound=_Status)


class WriteLimiter(Protocol):
    def wait(self) -> float: ...


class Kube:
    """A JSON client for one API server with one identity."""

    origin = "credentials given directly"
    """Where the server and credentials came from, for messages: `kubeconfig PATH, context
    NAME`, `the in-cluster service account (DIR)`."""

    def __init__(self, server: str, *, token: str | None = None,
                 authorization: Callable[[], str | None] | None = None,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None,
                 client_certificate: Callable[[], ClientCertificate] | None = None,
                 verify: bool = True, tls_server_name: str | None = None,
                 proxy_url: str | None = None, transport: str = BUILTIN,
                 user_agent: str = "ssa-controller", request_timeout: float = 30.0,
                 write_limiter: WriteLimiter | None = None,
                 observer: RequestObserver | None = None, max_connections: int = 16) -> None:
        """`token` is a fixed bearer token; `authorization`, called before every request, gives
        the whole Authorization header instead (rotating credentials). `client_certificate`,
        called before every request, gives a (cert_file, key_file) that may change.
        `transport` names the transport (pools.TRANSPORTS); through a proxy it is urllib3."""
        self.server = server.rstrip("/")
        fixed = f"Bearer {token}" if token else None
        self._authorization = authorization or (lambda: fixed)
        self.user_agent = user_agent
        self.request_timeout = request_timeout
        self.write_limiter = write_limiter
        self.observer = observer
        self.warnings = serverwarnings.WarningLog()
        """The server's warnings, each logged once (shared by with_write_limit's copies)."""
        make = transport_factory(self.server, transport=transport, verify=verify,
                                 ca_file=ca_file, tls_server_name=tls_server_name,
                                 proxy_url=proxy_url, max_connections=max_connections)
        self._pool = Pools(make, client_certificate or (lambda: (cert_file, key_file)),
                           urlsplit(self.server).path.rstrip("/"))

    @classmethod
    def from_credentials(cls, found: Credentials, **kwargs: Any) -> Kube:
        """A client for `found`; `kwargs` are the constructor's other options."""
        kube = cls(found.server, authorization=found.authorization, ca_file=found.ca_file,
                   cert_file=found.cert_file, key_file=found.key_file,
                   client_certificate=found.client_certificate, verify=found.verify,
                   tls_server_name=found.tls_server_name, proxy_url=found.proxy_url, **kwargs)
        kube.origin = found.origin
        return kube

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None,
                        **kwargs: Any) -> Kube:
        """A client for a kubeconfig context (`path` None: $KUBECONFIG, else ~/.kube/config;
        see kubeconfig.load)."""
        return cls.from_credentials(kubeconfig.load(path, context), **kwargs)

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> Kube:
        """A client for the cluster this process runs in, as its service account (see
        credentials.in_cluster)."""
        return cls.from_credentials(credentials.in_cluster(), **kwargs)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if content_type:
            headers["Content-Type"] = content_type
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    @staticmethod
    def _target(path: str, params: Mapping[str, Any] | None) -> str:
        """The path with its query string."""
        query = {k: ("true" if v is True else "false" if v is False else v)
                 for k, v in (params or {}).items() if v is not None}
        return path + ("?" + urlencode(query) if query else "")

    def _prepared(self, method: str, body: Any,
                  content_type: str | None) -> tuple[bytes | None, dict[str, str]]:
        """The encoded body and the headers, once the write budget allows a write."""
        if method in WRITE_METHODS and self.write_limiter is not None:
            self.write_limiter.wait()
        data = None if body is None else encode_body(body, content_type)
        return data, self._headers(content_type if body is not None else None)

    def _observed(self, method: str, send: Callable[[], _Answer]) -> _Answer:
        """send()'s answer, reported to the observer, its server warnings logged; a transport
        failure as ApiError(0)."""
        started = time.monotonic()
        try:
            response = send()
        except TransportError as exc:
            self._observe(method, 0, started)
            raise unanswered(exc) from exc
        self._observe(method, response.status, started)
        self.warnings.log(response.headers.get("warning"))
        return response

    def _observe(self, method: str, status: int, started: float) -> None:
        if self.observer is not None:
            self.observer(method, status, time.monotonic() - started)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str | None = "application/json",
                timeout: float | None = None) -> Obj:
        """Send one request and return the decoded JSON body; raise ApiError on any status but
        2xx (a 3xx too: redirects are not followed, and an empty one is no success).
        `timeout` (default: `request_timeout`) bounds the whole request, from the connect to
        the last byte of the answer; nothing is sent once it has passed."""
        data, headers = self._prepared(method, body, content_type)
        target = self._target(path, params)
        response = self._observed(method, lambda: self._pool.send(
            method, target, headers, data, timeout or self.request_timeout))
        if not succeeded(response.status):
            raise error_from(response.status, response.data, response.headers)
        return orjson.loads(response.data) if response.data else {}

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        """The object (or document: /version) at `path`."""
        return self.request("GET", path, params=params)

    def list(self, path: str, params: ListOptions | None = None) -> ObjectList:
        """One page of the collection at `path`: every item when `params` sets no `limit`, else
        at most `limit` items and, in `metadata.continue`, the token of the next page (pass it
        as `continue`; an expired one is answered 410). ValueError when `path` is no
        collection's (the answer has no `items` list)."""
        answer = self.request("GET", path, params=params)
        if not isinstance(answer.get("items"), list):
            raise ValueError(f"GET {path} answered {answer.get('kind') or 'a document'}, not a "
                             "list: list() takes the path of a collection")
        return cast("ObjectList", answer)

    def create(self, path: str, body: Obj, params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("POST", path, params=params, body=body)

    def update(self, path: str, body: Obj, params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("PUT", path, params=params, body=body)

    def patch(self, path: str, body: Any, content_type: str,
              params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("PATCH", path, params=params, body=body, content_type=content_type)

    def delete(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("DELETE", path, params=params)

    def apply(self, path: str, body: Obj, *, field_manager: str, force: bool,
              dry_run: bool = False) -> Obj:
        """Server-side apply `body` to the object at `path` as `field_manager`."""
        params = {"fieldManager": field_manager, "force": force or None,
                  "dryRun": "All" if dry_run else None}
        return self.patch(path, body, APPLY_PATCH, params)

    def watch(self, path: str, params: Mapping[str, Any], timeout: float) -> WatchStream:
        """Open a watch; iterate the returned stream for events ({"type", "object"}) until the
        server closes the watch (or `WatchStream.close()` is called, from any thread).

        Opening it (connect, TLS handshake, send, the answer's head) is bounded by
        `request_timeout` (or `timeout` if shorter). `timeout` is the watch's deadline: it must
        exceed the server-side `timeoutSeconds`. A watch still open then is stalled (a hung
        server or middlebox: TCP alive, nothing moves; kube-apiserver v1.20 sends no bookmarks
        on an idle watch, so silence proves nothing sooner): iteration raises
        ApiError(0, WATCH_STALLED), and the idle pooled connections, which share its path to
        the server, are closed, so that the next requests open new ones instead of waiting out
        `request_timeout` on a stalled one.
        Raises ApiError when the server refuses the watch (or cannot be reached: status 0).
        """
        _, headers = self._prepared("GET", None, None)
        target = self._target(path, {**params, "watch": True})
        stream = self._observed("GET", lambda: self._pool.stream(
            "GET", target, headers, timeout, min(timeout, self.request_timeout)))
        if not succeeded(stream.status):
            try:
                data = stream.read()
            except TransportError as exc:
                raise unanswered(exc) from exc
            raise error_from(stream.status, data, stream.headers)
        return WatchStream(stream, deadline=timeout, on_stall=self._pool.clear)

    def with_write_limit(self, limiter: WriteLimiter | None) -> Kube:
        """A client sharing this one's connections, credentials and observer, with a write
        budget of its own instead of this one's (None: unlimited): for requests that must not
        wait behind the controller's writes (leader election, as in client-go; metrics reviews)."""
        client = copy.copy(self)
        client.write_limiter = limiter
        return client

    def close(self) -> None:
        self._pool.clear()
