"""The client's connections: which transport carries them (`client.transport`; urllib3 through
a proxy), how their sockets are set up (no Nagle delay, TCP keepalive), and the transport built
again whenever the client certificate changes.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from . import http1
from .credentials import ClientCertificate
from .transport import Response, SocketOption, Streamed, Transport

BUILTIN = "builtin"
URLLIB3 = "urllib3"
TRANSPORTS = (BUILTIN, URLLIB3)
"""The transports `client.transport` may name: the built-in HTTP/1.1 client (http1), which
speaks to no proxy (through one, urllib3 is taken), or urllib3 (urllib3transport)."""
KEEPALIVE = (30, 10, 3)
"""TCP keepalive of every connection: first probe after 30 s idle, then every 10 s, given up
after 3 unanswered: a connection whose path died silently (a vanished peer, a dropped NAT or
load-balancer entry) fails within about a minute at no request cost, instead of being reused
and hanging a request for `request_timeout`. A hung server's kernel still answers probes: the
watch deadline covers that."""
CONNECT_TIMEOUT = 10.0

TransportFactory = Callable[[str | None, str | None], Transport]
"""Makes the transport for a client certificate (cert_file, key_file)."""


def socket_options() -> list[SocketOption]:
    """No Nagle delay, and TCP keepalive (KEEPALIVE's timings where the platform has them)."""
    idle, interval, count = KEEPALIVE
    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
               (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
        options += [(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)]
    return options


def transport_factory(server: str, *, transport: str, verify: bool, ca_file: str | None,
                      tls_server_name: str | None, proxy_url: str | None,
                      max_connections: int) -> TransportFactory:
    """What makes the transport named by `transport` (one of TRANSPORTS; ValueError otherwise)
    to `server`, through `proxy_url` if given."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}: expected one of "
                         f"{', '.join(TRANSPORTS)}")
    url = urlsplit(server)
    https = url.scheme == "https"

    def make(cert_file: str | None, key_file: str | None) -> Transport:
        if proxy_url or transport == URLLIB3:
            from .urllib3transport import Urllib3Pool  # loaded only when taken
            return Urllib3Pool(
                f"{url.scheme}://{url.netloc}", proxy_url=proxy_url, verify=verify,
                ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                tls_server_name=tls_server_name, socket_options=socket_options(),
                maxsize=max_connections, connect_timeout=CONNECT_TIMEOUT)

        def tls() -> ssl.SSLContext:
            return http1.tls_context(verify=verify, ca_file=ca_file, cert_file=cert_file,
                                     key_file=key_file)
        return http1.Pool(url.hostname or "", url.port or (443 if https else 80),
                          tls=tls if https else None, server_hostname=tls_server_name,
                          socket_options=socket_options(), maxsize=max_connections,
                          connect_timeout=CONNECT_TIMEOUT)
    return make


class Pools:
    """The transport, built again whenever the client certificate changes: TLS presents it only
    when a connection is made. Idle connections of the old transport are closed at once, busy
    ones (an open watch) when their request ends."""

    def __init__(self, make: TransportFactory, certificate: Callable[[], ClientCertificate],
                 prefix: str) -> None:
        self._make = make
        self._certificate = certificate
        self._prefix = prefix
        """The path of the server's URL, put before every request's."""
        self._lock = threading.Lock()
        self._current = certificate()
        self._pool = make(*self._current)

    def send(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None,
             timeout: float) -> Response:
        """Send `path` (with its query) to the API server and read the whole answer, all of
        it (connect, TLS handshake, send, every read) within `timeout`."""
        return self._pool_for(self._certificate()).request(
            method, self._prefix + path, headers, body, timeout, time.monotonic() + timeout)

    def stream(self, method: str, path: str, headers: Mapping[str, str], timeout: float,
               opened_within: float) -> Streamed:
        """Send `path` (with its query) and read the answer's head within `opened_within`
        seconds; its body as it arrives, each read within `timeout`."""
        return self._pool_for(self._certificate()).stream(
            method, self._prefix + path, headers, timeout, time.monotonic() + opened_within)

    def _pool_for(self, certificate: ClientCertificate) -> Transport:
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
