"""Liveness and readiness probes: GET /healthz and /readyz, like controller-runtime's healthz.

Each endpoint aggregates named checks (callables returning True when healthy): 200 "ok"
when all pass, else 500 listing every check as "[+]name ok" / "[-]name failed: reason
withheld". `?verbose` lists the checks on success too, `?exclude=name` skips one, and
/healthz/<name> runs a single check. Also home of `BackgroundHttpServer`, the small
threaded HTTP(S) server that the metrics endpoint shares.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

Check = Callable[[], bool]
TLS_TIMEOUT = 10.0
"""Seconds a TLS connection may stay silent (handshake included) before it is dropped."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: Callable[[], ssl.SSLContext] | None = None

    def finish_request(self, request: socket.socket,  # type: ignore[override]
                       client_address: object) -> None:
        """With TLS, handshake in the connection's own thread (never in the accept loop)."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(TLS_TIMEOUT)
        try:
            secure = self.tls().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            self.shutdown_request(secure)


class _Server6(_Server):
    address_family = socket.AF_INET6


class BackgroundHttpServer:
    """A ThreadingHTTPServer bound at construction and served by a daemon thread; HTTPS when
    `tls` is given (called for each connection, so a renewed certificate is picked up)."""

    def __init__(self, bind_address: str, port: int,
                 handler: type[BaseHTTPRequestHandler], name: str,
                 tls: Callable[[], ssl.SSLContext] | None = None) -> None:
        server_class = _Server6 if ":" in bind_address else _Server
        self._server = server_class((bind_address, port), handler)
        self._server.tls = tls
        self._thread = threading.Thread(target=self._server.serve_forever, name=name,
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; waits for the serving loop to end."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler that logs at debug level instead of printing to stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug("%s %s", self.address_string(), format % args)

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


def _passes(name: str, check: Check) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a crashing check is a failing check
        log.exception("health check %s raised", name)
        return False


def aggregate(checks: Mapping[str, Check], excluded: set[str],
              verbose: bool) -> tuple[int, str]:
    """controller-runtime's aggregated healthz answer: (status code, text body)."""
    passed = {name: name in excluded or _passes(name, check)
              for name, check in checks.items()} or {"ping": True}
    failed = not all(passed.values())
    if not failed and not verbose:
        return 200, "ok"
    lines = []
    for name in sorted(passed):
        if name in excluded:
            lines.append(f"[+]{name} excluded: ok")
        elif passed[name]:
            lines.append(f"[+]{name} ok")
        else:
            lines.append(f"[-]{name} failed: reason withheld")
    unknown = sorted(excluded - set(checks))
    if unknown:
        lines.append("warn: some health checks cannot be excluded: no matches for "
                     + ", ".join(f'"{name}"' for name in unknown))
    lines.append("healthz check failed" if failed else "healthz check passed")
    return (500 if failed else 200), "\n".join(lines) + "\n"


def single(checks: Mapping[str, Check], name: str) -> tuple[int, str]:
    """The answer for /healthz/<name>: one check, 404 if unknown."""
    if name not in checks:
        return 404, "404 page not found\n"
    if _passes(name, checks[name]):
        return 200, "ok"
    return 500, f"internal server error: check {name} failed\n"


def _handler(endpoints: Mapping[str, Mapping[str, Check]]) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            endpoint, _, name = url.path.strip("/").partition("/")
            checks = endpoints.get(endpoint)
            if checks is None:
                status, body = 404, "404 page not found\n"
            elif name:
                status, body = single(checks, name)
            else:
                status, body = aggregate(checks, set(query.get("exclude", [])),
                                         "verbose" in query)
            self.reply(status, body.encode(), "text/plain; charset=utf-8")

    return Handler


class HealthServer:
    """Serves /healthz (liveness) and /readyz (readiness) on `port`; port 0 disables it."""

    def __init__(self, bind_address: str, port: int, *, healthz: Mapping[str, Check],
                 readyz: Mapping[str, Check]) -> None:
        self.bind_address = bind_address
        self.port = port
        self._endpoints = {"healthz": dict(healthz), "readyz": dict(readyz)}
        self._server: BackgroundHttpServer | None = None

    @property
    def enabled(self) -> bool:
        return self.port != 0

    def start(self) -> None:
        if not self.enabled or self._server is not None:
            return
        self._server = BackgroundHttpServer(self.bind_address, self.port,
                                            _handler(self._endpoints), "health-server")
        self._server.start()
        log.info("serving /healthz and /readyz on %s:%d", self.bind_address, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
