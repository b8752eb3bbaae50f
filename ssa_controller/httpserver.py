"""The small threaded HTTP(S) server behind the probes and /metrics: bound at construction,
served by a daemon thread, stopped on demand.

Not prometheus_client's start_http_server: /metrics needs a certificate reloaded per connection
and each scrape authorized by the API server, which that server cannot do.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class ListenError(Exception):
    """A server cannot listen where the configuration says."""


def listening(key: str, host: str, port: int, bind: Callable[[], T]) -> T:
    """bind()'s answer, or a ListenError naming the address and the config `key` of the port
    that could not be bound (`cannot listen on 0.0.0.0:8080 (server.metricsPort): address
    already in use`). `bind` must do nothing else that can fail with an OSError."""
    try:
        return bind()
    except OSError as exc:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = (exc.strerror or str(exc)).lower()
        raise ListenError(f"cannot listen on {address} ({key}): {reason}") from exc
