"""The only module that talks to the Kubernetes API server: a small JSON REST client.

Objects travel as plain dicts (decoded JSON), never as generated models: the controller caches
thousands of them. The `kubernetes` package is used only to load a kubeconfig (and to match
$NO_PROXY); a pod's service account is read by serviceaccount, without it. Requests and
watches go over http1 (a keep-alive HTTP/1.1 client, a third of urllib3's CPU per request);
through a proxy, over urllib3 (proxied). Every request is reported to an optional observer
(for metrics), writes pass an optional rate limiter first, and every response body is read or
released so its connection goes back to the pool.

Credentials are read again as they rotate: the Authorization header is asked for before every
request (a projected service-account token is re-read, the kubernetes loader re-runs an exec
plugin whose token expired), and an exec plugin's client certificate is renewed when it
expires, which rebuilds the connection pool. Kubeconfig `tls-server-name`, `proxy-url` (http
and https proxies; `$HTTPS_PROXY` / `$NO_PROXY` as the kubernetes package reads them, in a pod
too) and username/password (basic auth) are honoured; what cannot be honoured raises
CredentialsError naming the field.

Liveness: every request is bounded by `request_timeout` from its connect to its last byte,
every watch by a deadline (a watch
still open then is stalled; the idle pooled connections are dropped with it), and every
connection has TCP keepalive, so a silent stall or a dead path never hangs the controller.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from urllib.request import getproxies

import orjson

from . import http1, serverwarnings, serviceaccount

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_DIR_ENV = "SSA_SERVICE_ACCOUNT_DIR"
"""Names another directory holding `token` and `ca.crt` (tests run the controller "as a pod")."""
AUTH_SCHEMES = {"bearer": "Bearer", "basic": "Basic"}
PROXY_SCHEMES = ("http", "https")
WATCH_STALLED = "WatchStalled"
"""The reason of the ApiError(0) a watch raises when it outlives its deadline."""
KEEPALIVE = (30, 10, 3)
"""TCP keepalive of every connection: first probe after 30 s idle, then every 10 s, given up
after 3 unanswered: a connection whose path died silently (a vanished peer, a dropped NAT or
load-balancer entry) fails within about a minute at no request cost, instead of being reused
and hanging a request for `request_timeout`. A hung server's kernel still answers probes: the
watch deadline covers that."""

CONNECT_TIMEOUT = 10.0

Obj = dict[str, Any]
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


class CredentialsError(Exception):
    """Credentials that cannot be loaded, or a kubeconfig field this client cannot honour."""


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


@dataclass(frozen=True)
class Resource:
    """A REST resource: its group/version, plural name and scope."""

    group_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        return path(self.group_version, self.plural, namespace if self.namespaced else None,
                    name, subresource)


APPTASKS = Resource("example.com/v1", "apptasks")
DEPLOYMENTS = Resource("apps/v1", "deployments")
EVENTS = Resource("events.k8s.io/v1", "events")
LEASES = Resource("coordination.k8s.io/v1", "leases")
CRDS = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)


def rfc3339(moment: datetime | None = None) -> str:
    """A Kubernetes Time: RFC 3339, UTC, whole seconds: 2024-01-02T03:04:05Z."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime | None = None) -> str:
    """A Kubernetes MicroTime: RFC 3339, UTC, microseconds: 2024-01-02T03:04:05.000006Z."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def path(group_version: str, plural: str, namespace: str | None = None,
         name: str | None = None, subresource: str | None = None) -> str:
    """The URL path of a collection or object: path("apps/v1", "deployments", "ns", "x")."""
    parts = ["/api" if "/" not in group_version else "/apis", group_version]
    if namespace:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


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


def failed_test(error: ApiError) -> bool:
    """Whether a JSON patch was refused because one of its `test` operations failed.
    kube-apiserver (v1.20.2) answers a JSON patch that does not apply to the object 422 Invalid
    with a generic message and no causes, where a patched object it refuses (validation) comes
    with causes naming the fields: so for a patch whose other operations always apply, a 422
    without causes is a failed test."""
    details = (error.body or {}).get("details") or {}
    return error.status == 422 and not details.get("causes")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")  # names in lower case (http1, proxied)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_from(status: int, data: bytes, headers: Mapping[str, str]) -> ApiError:
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


def _succeeded(status: int) -> bool:
    return 200 <= status < 300


class _Body(Protocol):
    """A streamed answer's body: http1.Stream, or proxied.ProxiedStream."""

    def chunks(self) -> Iterator[bytes]: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class WatchStream:
    """An open watch. Iterate it for the decoded events ({"type", "object"}); iteration ends when
    the server ends the watch or after `close()`.

    Errors while reading raise ApiError(0, "TransportError", ...), except after `close()`: a read
    that close() aborted just ends the iteration. `close()` may be called from any thread (to
    abort a blocked read), any number of times, and never raises. The body is closed when
    iteration ends or close() is called, whichever is first.

    With a `deadline`, a watch still open that many seconds after it started is stalled: it is
    aborted (from a timer thread) and iteration raises ApiError(0, WATCH_STALLED); then
    `on_stall` is called.
    """

    def __init__(self, body: _Body, deadline: float | None = None,
                 on_stall: Callable[[], None] | None = None) -> None:
        self._body = body
        self._lock = threading.Lock()
        self._closed = False      # close() was called (or iteration finished, or it stalled)
        self._stalled = False     # the deadline passed before the watch ended
        self._reading = False     # a thread is (about to be) blocked reading the response
        self._released = False
        self._deadline = deadline
        self._on_stall = on_stall
        self._timer: threading.Timer | None = None
        if deadline is not None:
            self._timer = threading.Timer(deadline, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def __iter__(self) -> Iterator[Obj]:
        return self._events()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _events(self) -> Iterator[Obj]:
        chunks = self._body.chunks()
        buffer = b""
        try:
            while True:
                with self._lock:
                    if self._ended():
                        return
                    self._reading = True
                try:
                    chunk = next(chunks, None)
                except Exception as exc:
                    with self._lock:
                        if self._ended():  # close() aborted the read: not an error
                            return
                    if isinstance(exc, http1.TransportError):
                        raise ApiError(0, "TransportError", str(exc)) from exc
                    raise
                finally:
                    with self._lock:
                        self._reading = False
                if chunk is None:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)
        finally:
            with self._lock:
                self._closed = True
            self._release()

    def close(self) -> None:
        """Stop the watch: abort a read blocked in another thread, release the response."""
        self._shut(stalled=False)

    def _ended(self) -> bool:
        """Whether iteration is over (call with the lock held); raises if the watch stalled."""
        if self._stalled:
            raise ApiError(0, WATCH_STALLED,
                           f"the watch did not end within {self._deadline:g}s of its start")
        return self._closed

    def _expire(self) -> None:
        if self._shut(stalled=True) and self._on_stall is not None:
            self._on_stall()

    def _shut(self, *, stalled: bool) -> bool:
        """Close the watch (stalled or not); False if it was closed already."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self._stalled = stalled
            if self._reading:
                # Another thread is blocked reading: wake it up; it closes the body. Done under
                # the lock, so that thread cannot move on and reuse the socket meanwhile.
                self._body.abort()
                return True
        self._release()
        return True

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        if self._timer is not None:
            self._timer.cancel()
        self._body.close()


ClientCertificate = tuple[str | None, str | None]
"""(certificate file, key file) for TLS client authentication."""


def _authorization(credential: str | None) -> str | None:
    """The Authorization header for a credential as the kubernetes loader stores it: "Bearer T"
    (kubeconfig token, exec plugin, auth provider) or "Basic B64" (kubeconfig username/password),
    the scheme in any case; a credential without a scheme is a bearer token."""
    if not credential or not credential.strip():
        return None
    scheme, _, value = credential.strip().partition(" ")
    canonical = AUTH_SCHEMES.get(scheme.lower())
    if canonical is None or not value.strip():
        return f"Bearer {credential.strip()}"
    return f"{canonical} {value.strip()}"


def _proxy_url(server: str, proxy: str | None, no_proxy: str | None) -> str | None:
    """The proxy to reach the API server through, as the kubernetes package decides it (kubeconfig
    `proxy-url`, else `$HTTPS_PROXY` and co., unless `$NO_PROXY` matches), or None."""
    if not proxy:
        return None
    from kubernetes.client.rest import should_bypass_proxies
    if should_bypass_proxies(server, no_proxy or ""):
        return None
    scheme = urlsplit(proxy).scheme if "://" in proxy else None
    if scheme not in PROXY_SCHEMES:
        raise CredentialsError(
            "kubeconfig proxy-url (or proxy environment variable) "
            f"{without_userinfo(proxy)!r}: scheme {scheme!r} is not supported; use an http or "
            "https proxy")
    return proxy


def without_userinfo(text: str) -> str:
    """`text` without the user and password of a URL (http://user:pw@proxy:3128 ->
    http://proxy:3128)."""
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _environment_proxy(server: str) -> str | None:
    """The proxy the environment names for `server` ($HTTPS_PROXY, $ALL_PROXY; $NO_PROXY), as a
    kubernetes Configuration without a kubeconfig `proxy-url` takes it, or None."""
    proxies = getproxies()
    return _proxy_url(server, proxies.get("https") or proxies.get("all"), proxies.get("no"))


class _RefreshedAuthorization:
    """The Authorization header of a loaded kubernetes Configuration, brought up to date before
    every request by the loader's refresh hook (expired exec or auth-provider tokens), as
    `Configuration.get_api_key_with_prefix` does. The hook writes into a plain namespace rather
    than the Configuration, whose `host` setter scans the environment for proxy settings on
    each call (a quarter of a request's CPU time)."""

    def __init__(self, cfg: Any) -> None:
        self._hook: Callable[[Any], None] | None = cfg.refresh_api_key_hook
        self._prefix: dict[str, str] = dict(cfg.api_key_prefix)
        self._target = SimpleNamespace(api_key=dict(cfg.api_key), refresh_api_key_hook=None)
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            if self._hook is not None:
                self._hook(self._target)
            api_key: dict[str, str] = self._target.api_key
        for name in ("BearerToken", "authorization"):
            if api_key.get(name):
                prefix = self._prefix.get(name)
                return _authorization(f"{prefix} {api_key[name]}" if prefix else api_key[name])
        return None


class _ExecClientCertificate:
    """The client certificate an exec plugin returned, renewed by running the plugin again once
    it expires, as client-go does (the kubernetes loader renews only exec tokens)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._lock = threading.Lock()

    @staticmethod
    def of(loader: Any) -> _ExecClientCertificate | None:
        """The renewing certificate for a loaded kubeconfig, or None when it has none that expires
        (only exec plugins give a certificate an expiry; a token expiry is the loader's job)."""
        expires = getattr(loader, "expiry", None) is not None
        return _ExecClientCertificate(loader) if expires and "token" not in vars(loader) else None

    def __call__(self) -> ClientCertificate:
        from kubernetes.client import Configuration
        from kubernetes.config.kube_config import EXPIRY_SKEW_PREVENTION_DELAY
        with self._lock:
            renew_at = self._loader.expiry - EXPIRY_SKEW_PREVENTION_DELAY
            if renew_at <= datetime.now(UTC):
                self._loader.load_and_set(Configuration())
            return self._loader.cert_file, self._loader.key_file


class _Streamed(_Body, Protocol):
    """A streamed answer: its status and headers (names in lower case), its body to come."""

    status: int
    headers: Mapping[str, str]

    def read(self) -> bytes: ...


class _Pool(Protocol):
    """Connections to the API server: http1.Pool, or proxied.ProxyPool through a proxy."""

    def request(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes | None, timeout: float, deadline: float | None = None
                ) -> http1.Response: ...
    def stream(self, method: str, target: str, headers: Mapping[str, str],
               timeout: float) -> _Streamed: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


PoolFactory = Callable[[str | None, str | None], _Pool]


class _Pools:
    """The connection pool, built again whenever the client certificate changes: TLS presents
    it only when a connection is made. Idle connections of the old pool are closed at once,
    busy ones (an open watch) when their request ends."""

    def __init__(self, make: PoolFactory, certificate: Callable[[], ClientCertificate],
                 prefix: str) -> None:
        self._make = make
        self._certificate = certificate
        self._prefix = prefix
        """The path of the server's URL, put before every request's."""
        self._lock = threading.Lock()
        self._current = certificate()
        self._pool = make(*self._current)

    def send(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None,
             timeout: float) -> http1.Response:
        """Send `path` (with its query) to the API server and read the whole answer, all of
        it (connect, TLS handshake, send, every read) within `timeout`."""
        return self._pool_for(self._certificate()).request(
            method, self._prefix + path, headers, body, timeout, time.monotonic() + timeout)

    def stream(self, method: str, path: str, headers: Mapping[str, str],
               timeout: float) -> _Streamed:
        """Send `path` (with its query) and read the answer's head; its body as it arrives."""
        return self._pool_for(self._certificate()).stream(
            method, self._prefix + path, headers, timeout)

    def _pool_for(self, certificate: ClientCertificate) -> _Pool:
        with self._lock:
            if certificate != self._current:
                old = self._pool
                self._pool, self._current = self._make(*certificate), certificate
                old.close()
            return self._pool

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            self._pool.clear()


def _socket_options() -> list[http1.SocketOption]:
    """No Nagle delay, and TCP keepalive (KEEPALIVE's timings where the platform has them)."""
    idle, interval, count = KEEPALIVE
    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
               (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
        options += [(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)]
    return options


def _pool_factory(server: str, *, verify: bool, ca_file: str | None,
                  tls_server_name: str | None, proxy_url: str | None,
                  max_connections: int) -> PoolFactory:
    url = urlsplit(server)
    https = url.scheme == "https"

    def make(cert_file: str | None, key_file: str | None) -> _Pool:
        if proxy_url:
            from . import proxied  # urllib3 is loaded only through a proxy
            return proxied.ProxyPool(
                f"{url.scheme}://{url.netloc}", proxy_url, verify=verify, ca_file=ca_file,
                cert_file=cert_file, key_file=key_file, tls_server_name=tls_server_name,
                socket_options=_socket_options(), maxsize=max_connections,
                connect_timeout=CONNECT_TIMEOUT)

        def tls() -> ssl.SSLContext:
            return http1.tls_context(verify=verify, ca_file=ca_file, cert_file=cert_file,
                                     key_file=key_file)
        return http1.Pool(url.hostname or "", url.port or (443 if https else 80),
                          tls=tls if https else None, server_hostname=tls_server_name,
                          socket_options=_socket_options(), maxsize=max_connections,
                          connect_timeout=CONNECT_TIMEOUT)
    return make


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
                 proxy_url: str | None = None,
                 user_agent: str = "ssa-controller", request_timeout: float = 30.0,
                 write_limiter: WriteLimiter | None = None,
                 observer: RequestObserver | None = None, max_connections: int = 16) -> None:
        """`token` is a fixed bearer token; `authorization`, called before every request, gives
        the whole Authorization header instead (rotating credentials). `client_certificate`,
        called before every request, gives a (cert_file, key_file) that may change."""
        self.server = server.rstrip("/")
        fixed = f"Bearer {token}" if token else None
        self._authorization = authorization or (lambda: fixed)
        self.user_agent = user_agent
        self.request_timeout = request_timeout
        self.write_limiter = write_limiter
        self.observer = observer
        self.warnings = serverwarnings.WarningLog()
        """The server's warnings, each logged once (shared by with_write_limit's copies)."""
        make = _pool_factory(self.server, verify=verify, ca_file=ca_file,
                             tls_server_name=tls_server_name,
                             proxy_url=proxy_url, max_connections=max_connections)
        self._pool = _Pools(make, client_certificate or (lambda: (cert_file, key_file)),
                            urlsplit(self.server).path.rstrip("/"))

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None,
                        **kwargs: Any) -> Kube:
        """A client for a kubeconfig context (`path` None: $KUBECONFIG, else ~/.kube/config)."""
        from kubernetes.client import Configuration
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger
        paths = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        try:
            merged = KubeConfigMerger(paths)
            if merged.config is None:
                raise CredentialsError(f"no kubeconfig found at {paths}")
            loader = KubeConfigLoader(config_dict=merged.config, active_context=context,
                                      config_base_path=None, config_persister=merged.save_changes)
            cfg = Configuration()
            loader.load_and_set(cfg)
        except ConfigException as exc:
            raise CredentialsError(f"kubeconfig {paths}: {exc}") from exc
        kube = cls._from_configuration(cfg, client_certificate=_ExecClientCertificate.of(loader),
                                       **kwargs)
        kube.origin = f"kubeconfig {paths}, context {loader.current_context['name']}"
        return kube

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> Kube:
        """A client for the cluster this process runs in, as its service account: `token` and
        `ca.crt` from SERVICE_ACCOUNT_DIR (or $SSA_SERVICE_ACCOUNT_DIR), the API server from
        $KUBERNETES_SERVICE_HOST / _PORT (see serviceaccount; the token file is re-read at most
        once a minute: projected tokens rotate)."""
        directory = Path(os.environ.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)
        try:
            pod = serviceaccount.load(directory, os.environ)
        except serviceaccount.ServiceAccountError as exc:
            raise CredentialsError(f"in-cluster config ({directory}): {exc}") from exc
        kube = cls(pod.server, authorization=pod.authorization, ca_file=pod.ca_file,
                   proxy_url=_environment_proxy(pod.server), **kwargs)
        kube.origin = f"the in-cluster service account ({directory})"
        return kube

    @classmethod
    def _from_configuration(cls, cfg: Any, **kwargs: Any) -> Kube:
        return cls(cfg.host, authorization=_RefreshedAuthorization(cfg), ca_file=cfg.ssl_ca_cert,
                   cert_file=cfg.cert_file, key_file=cfg.key_file, verify=cfg.verify_ssl,
                   tls_server_name=cfg.tls_server_name,
                   proxy_url=_proxy_url(cfg.host, cfg.proxy, cfg.no_proxy), **kwargs)

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
        except http1.TransportError as exc:
            self._observe(method, 0, started)
            raise ApiError(0, "TransportError", str(exc)) from exc
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
        if not _succeeded(response.status):
            raise _error_from(response.status, response.data, response.headers)
        return orjson.loads(response.data) if response.data else {}

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("GET", path, params=params)

    def list(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("GET", path, params=params)

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

        `timeout` is the watch's deadline: it must exceed the server-side `timeoutSeconds`. A
        watch still open then is stalled (a hung server or middlebox: TCP alive, nothing moves;
        kube-apiserver v1.20 sends no bookmarks on an idle watch, so silence proves nothing
        sooner): iteration raises ApiError(0, WATCH_STALLED), and the idle pooled connections,
        which share its path to the server, are closed, so that the next requests open new
        ones instead of waiting out `request_timeout` on a stalled one.
        Raises ApiError when the server refuses the watch (or cannot be reached: status 0).
        """
        _, headers = self._prepared("GET", None, None)
        target = self._target(path, {**params, "watch": True})
        stream = self._observed("GET", lambda: self._pool.stream("GET", target, headers,
                                                                 timeout))
        if not _succeeded(stream.status):
            try:
                data = stream.read()
            except http1.TransportError as exc:
                raise ApiError(0, "TransportError", str(exc)) from exc
            raise _error_from(stream.status, data, stream.headers)
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
