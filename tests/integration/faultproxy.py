"""A fault-injecting proxy between the controller under test and kube-apiserver, on loopback.

Design: the proxy terminates TLS. The controller's traffic is HTTPS, and a plain TCP relay can
stall or reset connections but cannot answer a request with 429 or 503: for that the proxy must
see requests. So it presents the API server's own serving certificate and key (ControlPlane's
cert dir: `apiserver.crt`, whose SANs include 127.0.0.1, and `apiserver.key`), which the
controller's kubeconfig already trusts: only the server URL changes (`ControllerProcess`'s
`server_url`). Each accepted connection gets its own TLS connection to the API server (verified
against its CA), made before the client's handshake: when the API server is down the client's
connection is reset at once and counted as `refused`, as close to "connection refused" as a
proxy gets. One thread per connection parses HTTP/1.1 requests (Content-Length bodies, which is
what the controller's clients send) and relays each response (Content-Length, chunked,
or until close), chunk by chunk as it arrives, so watch streams pass through live. Requests are
never pipelined by the client, so a connection is always either waiting for a request or
relaying one response.

Faults, switchable at run time from any thread:
- `stall()`: every connection open now stops forwarding in both directions and stays open
  (a hung server or middlebox: TCP is alive, nothing moves); new connections work normally.
  `pass_through()` lets them move again. The proxy's kernel still acknowledges everything,
  TCP keepalive probes included, so only the client's own deadlines can notice.
- `reset()`: every connection open now is reset (RST).
- `stall_handshakes()`: every new connection is accepted (TCP) but its TLS handshake is held
  (a slow or overloaded path to the server); connections already open are not affected.
  `pass_through()` lets held handshakes proceed.
- `inject(...)`: a share of the requests (optionally only those of some methods, or whose path,
  query or body contains a given text, and at most `limit`) is answered with an injected error
  Status (429 with `Retry-After`, 410, 500, 503, ...), or by resetting or stalling its
  connection, instead of being forwarded.
- `pass_through()`: no faults; stalled connections forward again, held handshakes proceed.

Everything is recorded for assertions: accepted and refused connections, and one RequestRecord
per request with its outcome (the API server's status, the injected status, "reset",
"stalled"; a stalled request is recorded when it is held, and again with its answer if it is
forwarded after `pass_through()`). The proxy listens on 127.0.0.1 only, lives at most
`lifetime` seconds (then it closes itself), and `close()` stops and joins every thread it
started.
"""

from __future__ import annotations

import json
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

Fault = int | Literal["reset", "stall"]
"""An injected answer: an error status (429, 410, 500, ...) or what happens to the connection."""
Outcome = int | Literal["reset", "stalled", "lost"]
"""What a request got: a status (from the API server or injected), its connection reset by the
proxy, its connection stalled, or its connection lost (the API server went away)."""

REASONS = {401: "Unauthorized", 410: "Expired", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable"}
MAX_LINE = 65536
CHUNK = 65536
POLL = 0.2
"""How often a waiting connection thread looks at the proxy's state (seconds)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request the proxy received: when (time.monotonic()), what, and what it got."""

    at: float
    method: str
    path: str
    query: str
    outcome: Outcome
    injected: bool

    @property
    def is_watch(self) -> bool:
        return "watch=true" in self.query


@dataclass(frozen=True)
class _Injection:
    faults: tuple[Fault, ...]
    share: float
    methods: frozenset[str] | None
    retry_after: int
    limit: int | None
    path: str | None
    query: str | None
    body: bytes | None

    def matches(self, method: str, path: str, query: str, body: bytes) -> bool:
        return (self.methods is None or method in self.methods) \
            and (self.path is None or self.path in path) \
            and (self.query is None or self.query in query) \
            and (self.body is None or self.body in body)


class _Closed(Exception):
    """The connection ended (EOF, reset, or the proxy closed it)."""


class _Stream:
    """Buffered reads over one socket, with a buffer the proxy can see (unlike makefile())."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def fill(self) -> None:
        """Read what the socket has (blocking, unless its timeout is 0: then an SSLSocket
        with nothing to read raises SSLWantReadError)."""
        try:
            data = self.sock.recv(CHUNK)
        except ssl.SSLWantReadError:
            raise
        except (OSError, ValueError) as exc:
            raise _Closed(str(exc)) from exc
        if not data:
            raise _Closed("EOF")
        self.buffer += data

    def readline(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_LINE:
                raise _Closed("line too long")
            self.fill()
        line = bytes(self.buffer[:end + 1])
        del self.buffer[:end + 1]
        return line

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_some(self, limit: int) -> bytes:
        if not self.buffer:
            self.fill()
        data = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return data

    def has_data(self) -> bool:
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return bool(self.buffer) or pending > 0


def _headers(stream: _Stream) -> tuple[bytes, dict[str, str], bytes]:
    """Read a start line and headers; return (start line, lowercased headers, raw bytes)."""
    start = stream.readline()
    raw = [start]
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b"\n"):
        raw.append(line)
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    raw.append(line)
    return start, headers, b"".join(raw)


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (OSError, ValueError) as exc:
        raise _Closed(str(exc)) from exc


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _wake(sock: socket.socket) -> None:
    """Wake a thread blocked reading `sock` (Linux: shutdown(SHUT_RD) ends the read). The plain
    socket's shutdown: SSLSocket.shutdown would also drop its TLS state under the reader."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RD)
    except OSError:
        pass


def _status_response(status: int, retry_after: int) -> bytes:
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": f"injected by faultproxy: {status}",
                       "reason": REASONS.get(status, ""), "code": status}).encode()
    headers = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
               "Content-Type: application/json", f"Content-Length: {len(body)}"]
    if status == 429:
        headers.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


class _Connection:
    """One client connection and its own upstream connection, served by one thread."""

    def __init__(self, proxy: FaultProxy, client: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        self.proxy = proxy
        self.client, self.upstream = client, upstream
        self.from_client, self.from_upstream = _Stream(client), _Stream(upstream)
        self.stalled = threading.Event()
        self.resetting = threading.Event()

    def serve(self) -> None:
        try:
            while self._await_request():
                self._exchange()
        except _Closed:
            pass
        finally:
            if self.resetting.is_set():
                _reset(self.client)
            else:
                self.client.close()
            self.upstream.close()
            self.proxy._forget(self)

    def stall(self) -> None:
        self.stalled.set()

    def resume(self) -> None:
        self.stalled.clear()

    def reset(self) -> None:
        self.resetting.set()
        _wake(self.client)
        _wake(self.upstream)

    def _hold(self) -> None:
        """While stalled, forward nothing and keep the connection open; raise once it is to
        be reset (or the proxy closes)."""
        while self.stalled.is_set() and not self.resetting.is_set():
            time.sleep(POLL)
        if self.resetting.is_set():
            raise _Closed("reset")

    def _await_request(self) -> bool:
        """Wait for the client's next request; False when the API server closed the idle
        connection (then the client's is closed too, as a transparent proxy would)."""
        while not self.from_client.has_data():
            self._hold()
            readable, _, _ = select.select([self.client, self.upstream], [], [], POLL)
            if self.client in readable:
                break
            if self.upstream in readable and self._upstream_closed():
                return False
        return True

    def _upstream_closed(self) -> bool:
        """Whether the idle upstream connection was closed (not just sent a TLS session
        ticket, which makes it readable too)."""
        self.upstream.settimeout(0.0)
        try:
            self.from_upstream.fill()
        except ssl.SSLWantReadError:
            return False
        except _Closed:
            return True
        finally:
            self.upstream.settimeout(None)
        return True  # data nobody asked for: the connection is out of step, drop it

    def _exchange(self) -> None:
        start, headers, raw = _headers(self.from_client)
        body = self.from_client.read(int(headers.get("content-length", "0")))
        at = time.monotonic()
        method, target = start.decode("latin-1").split()[:2]
        url = urlsplit(target)
        fault = self.proxy._choose_fault(method, url.path, url.query, body)

        def record(outcome: Outcome) -> None:
            self.proxy._record(RequestRecord(at, method, url.path, url.query, outcome,
                                             fault is not None))

        if fault == "stall":
            self.stalled.set()
        if self.stalled.is_set():
            record("stalled")  # and again with its answer, if it is forwarded later
        self._hold()
        if fault == "reset":
            record("reset")
            self.resetting.set()
            raise _Closed("reset injected")
        if isinstance(fault, int):
            record(fault)
            _send(self.client, _status_response(fault, self.proxy.retry_after))
            return
        try:
            _send(self.upstream, raw + body)
            status_line, response_headers, response_raw = _headers(self.from_upstream)
        except _Closed:
            record("lost")
            self.resetting.set()
            raise
        status = int(status_line.split()[1])
        record(status)
        self._forward(response_raw)
        self._relay_body(method, status, response_headers)

    def _relay_body(self, method: str, status: int, headers: dict[str, str]) -> None:
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return
        try:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                self._relay_chunks()
            elif "content-length" in headers:
                self._relay_length(int(headers["content-length"]))
            else:
                self._relay_until_close()
        except _Closed:
            self.resetting.set()  # the API server went away mid-response: so does the client's
            raise

    def _forward(self, data: bytes) -> None:
        self._hold()
        _send(self.client, data)

    def _relay_chunks(self) -> None:
        while True:
            size_line = self.from_upstream.readline()
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                trailer = b""
                while (line := self.from_upstream.readline()) not in (b"\r\n", b"\n"):
                    trailer += line
                self._forward(size_line + trailer + line)
                return
            self._forward(size_line + self.from_upstream.read(size + 2))

    def _relay_length(self, remaining: int) -> None:
        while remaining > 0:
            data = self.from_upstream.read_some(remaining)
            remaining -= len(data)
            self._forward(data)

    def _relay_until_close(self) -> None:
        while True:
            try:
                data = self.from_upstream.read_some(CHUNK)
            except _Closed:
                return
            self._forward(data)


class FaultProxy:
    """A TLS-terminating fault-injecting proxy in front of `upstream` (https://host:port)."""

    def __init__(self, upstream: str, *, cert_file: Path, key_file: Path, ca_file: Path,
                 lifetime: float = 600.0, seed: int = 9) -> None:
        parsed = urlsplit(upstream)
        assert parsed.hostname is not None and parsed.port is not None
        self._upstream = (parsed.hostname, parsed.port)
        self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_tls.load_cert_chain(cert_file, key_file)
        self._client_tls = ssl.create_default_context(cafile=str(ca_file))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lifetime = lifetime
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._injection: _Injection | None = None
        self._injected = 0
        self._records: list[RequestRecord] = []
        self._hold_handshakes = threading.Event()
        self.accepted = 0
        self.refused = 0
        self.held_handshakes = 0
        self.stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        self._spawn(self._accept_loop, "faultproxy-accept")

    def close(self) -> None:
        """Stop accepting, close every connection, join every thread."""
        self.stopping.set()
        self._listener.close()
        for connection in self._open():
            connection.reset()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(10.0)
        alive = [t.name for t in threads if t.is_alive() and t is not threading.current_thread()]
        assert not alive, f"fault proxy threads still running: {alive}"

    # -- faults ---------------------------------------------------------------------------

    def pass_through(self) -> None:
        """No faults: requests are forwarded; stalled connections move again."""
        with self._lock:
            self._injection = None
        self._hold_handshakes.clear()
        for connection in self._open():
            connection.resume()

    def stall(self) -> int:
        """Stall every connection open now (new ones are not affected); return how many."""
        connections = self._open()
        for connection in connections:
            connection.stall()
        return len(connections)

    def stall_handshakes(self) -> None:
        """Hold the TLS handshake of every new connection until pass_through()."""
        self._hold_handshakes.set()

    def reset(self) -> int:
        """Reset every connection open now; return how many."""
        connections = self._open()
        for connection in connections:
            connection.reset()
        return len(connections)

    def inject(self, faults: Collection[Fault], share: float = 1.0, *,
               methods: Collection[str] | None = None, retry_after: int = 2,
               limit: int | None = None, path: str | None = None, query: str | None = None,
               body: bytes | None = None) -> None:
        """Answer `share` of the requests (of `methods`, or all; whose path, query and body
        contain `path`, `query` and `body`, when given), at most `limit` of them, with one of
        `faults` at random instead of forwarding them."""
        with self._lock:
            self._injection = _Injection(tuple(faults), share,
                                         None if methods is None else frozenset(methods),
                                         retry_after, limit, path, query, body)
            self._injected = 0

    @property
    def retry_after(self) -> int:
        """The Retry-After of injected 429s."""
        with self._lock:
            return self._injection.retry_after if self._injection else 0

    # -- what happened ----------------------------------------------------------------------

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def outcomes(self, *, injected: bool | None = None) -> Counter[Outcome]:
        return Counter(r.outcome for r in self.records()
                       if injected is None or r.injected == injected)

    # -- internals ------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., object], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _open(self) -> list[_Connection]:
        with self._lock:
            return list(self._connections)

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _accept_loop(self) -> None:
        deadline = time.monotonic() + self._lifetime
        self._listener.settimeout(POLL)
        while not self.stopping.is_set():
            if time.monotonic() > deadline:
                self._spawn(self.close, "faultproxy-expired")
                return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            self._spawn(self._open_connection, f"faultproxy-conn-{self.accepted}", client)

    def _open_connection(self, client: socket.socket) -> None:
        try:
            upstream = self._client_tls.wrap_socket(
                socket.create_connection(self._upstream, timeout=5.0),
                server_hostname=self._upstream[0])
        except OSError:
            with self._lock:
                self.refused += 1
            _reset(client)
            return
        if self._hold_handshakes.is_set():
            with self._lock:
                self.held_handshakes += 1
            while self._hold_handshakes.is_set() and not self.stopping.is_set():
                time.sleep(POLL)
        try:
            client.settimeout(10.0)
            tls_client = self._server_tls.wrap_socket(client, server_side=True)
        except OSError:
            client.close()
            upstream.close()
            return
        tls_client.settimeout(None)
        upstream.settimeout(None)
        connection = _Connection(self, tls_client, upstream)
        with self._lock:
            if self.stopping.is_set():
                tls_client.close()
                upstream.close()
                return
            self._connections.add(connection)
        connection.serve()

    def _choose_fault(self, method: str, path: str, query: str, body: bytes) -> Fault | None:
        with self._lock:
            plan = self._injection
            if plan is None or not plan.matches(method, path, query, body):
                return None
            if plan.limit is not None and self._injected >= plan.limit:
                return None
            if self._rng.random() >= plan.share:
                return None
            self._injected += 1
            return self._rng.choice(plan.faults)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)


