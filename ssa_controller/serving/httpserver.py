"""The small HTTP(S) server behind the probes and /metrics: bound at construction, served by
daemon threads, stopped on demand, and bounded whatever its clients do.

One thread accepts connections and reads each request's head, TLS handshake included, without
blocking on any of them; a few workers answer whole requests, one request per connection. A
client that connects and sends nothing, or trickles bytes, so holds a socket but no thread:

- at most `Limits.pending` connections per port wait for their request; when one more arrives,
  the one that has waited longest is closed (a probe or a scrape sends its request at once, so
  a flood of idle sockets delays it by no more than its own turn);
- every connection is closed `Limits.deadline` seconds after it was accepted, whatever it is
  doing then: handshaking, sending its request, waiting for its answer or reading it slowly;
- at most `Limits.workers` requests are answered at once, `Limits.queue` more wait, and beyond
  that a request is answered 503 at once.

Not prometheus_client's start_http_server: /metrics needs a certificate reloaded per connection
and each scrape authorized by the API server, which that server cannot do; nor the standard
library's ThreadingHTTPServer, which gives every connection a thread until it ends.
"""

from __future__ import annotations

import errno
import io
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_HEAD = 16384
"""Bytes of request line and headers accepted; a longer head is answered 431."""
READ_SIZE = 4096
BACKLOG = 128


@dataclass(frozen=True)
class Limits:
    """What one port gives its clients at most (see the module's docstring)."""

    pending: int = 256
    workers: int = 4
    queue: int = 16
    deadline: float = 15.0


@dataclass(frozen=True)
class Request:
    """A request whose head has arrived: the connection (blocking again), the head's bytes,
    when the connection must be closed (time.monotonic)."""

    sock: socket.socket
    head: bytes
    deadline: float


@dataclass
class _Waiting:
    """A connection whose request head has not all arrived."""

    sock: socket.socket
    address: tuple[str, int]
    deadline: float
    handshaking: bool
    head: bytearray = field(default_factory=bytearray)


def _answer(status: int, reason: str) -> bytes:
    body = f"{reason}\n".encode()
    return (f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


BUSY = _answer(503, "Service Unavailable")
TOO_LARGE = _answer(431, "Request Header Fields Too Large")


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _head_complete(head: bytearray) -> bool:
    return b"\r\n\r\n" in head or b"\n\n" in head


class _DeadlineWriter(io.BufferedIOBase):
    """The handler's wfile: each write sent whole before the connection's deadline, or
    TimeoutError (a reader too slow for the answer holds the worker no longer)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the connection's deadline passed while answering")
            self._sock.settimeout(left)
            sent += self._sock.send(view[sent:])
        return sent


class QuietHandler(BaseHTTPRequestHandler):
    """Answers one Request (its head already read) and logs at debug level instead of printing
    to stderr."""

    request: Request

    def setup(self) -> None:
        self.connection = self.request.sock
        self.rfile = io.BytesIO(self.request.head)
        self.wfile = _DeadlineWriter(self.request.sock, self.request.deadline)

    def finish(self) -> None:
        self.wfile.close()

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


class BackgroundHttpServer:
    """An HTTP server bound at construction and served by daemon threads once started; HTTPS
    when `tls` is given (called for each connection, so a renewed certificate is picked up)."""

    def __init__(self, bind_address: str, port: int, handler: type[QuietHandler], name: str,
                 tls: Callable[[], ssl.SSLContext] | None = None,
                 limits: Limits = Limits()) -> None:
        family = socket.AF_INET6 if ":" in bind_address else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((bind_address, port))
            self._listener.listen(BACKLOG)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._handler, self._tls, self._limits, self._name = handler, tls, limits, name
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._waiting: OrderedDict[socket.socket, _Waiting] = OrderedDict()
        self._requests: queue.Queue[tuple[Request, tuple[str, int]] | None] = queue.Queue(
            limits.queue)
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._serve, name=name, daemon=True)] + [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(limits.workers)]

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; waits for the threads to end (a worker finishes
        the answer it is giving, within its connection's deadline)."""
        self._stopping.set()
        if self._threads[0].is_alive():
            self._wake_write.send(b"x")
            for _ in range(self._limits.workers):
                self._requests.put(None)  # after the queued requests, which are answered
            for thread in self._threads:
                thread.join()
        for sock in (self._listener, self._wake_read, self._wake_write):
            _close(sock)
        self._selector.close()

    # -- the accepting and reading thread ---------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                oldest = next(iter(self._waiting.values()), None)
                timeout = None if oldest is None else max(0.0, oldest.deadline
                                                          - time.monotonic())
                for key, _ in self._selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.data is not None:
                        self._read(key.data)
                self._expire(time.monotonic())
        finally:
            for waiting in list(self._waiting.values()):
                self._drop(waiting)

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors: make room, try again later
                log.warning("%s: cannot accept a connection: %s", self._name, exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._waiting:
                    self._drop(next(iter(self._waiting.values())))
                return
            self._admit(sock, address)
            if len(self._waiting) > self._limits.pending:
                self._drop(next(iter(self._waiting.values())))

    def _admit(self, sock: socket.socket, address: tuple[str, int]) -> None:
        sock.setblocking(False)
        deadline = time.monotonic() + self._limits.deadline
        if self._tls is not None:
            try:
                sock = self._tls().wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
            except (OSError, ValueError) as exc:
                log.debug("%s: TLS with %s failed: %s", self._name, address, exc)
                _close(sock)
                return
        waiting = _Waiting(sock, address, deadline, handshaking=self._tls is not None)
        self._waiting[sock] = waiting
        self._selector.register(sock, selectors.EVENT_READ, waiting)

    def _read(self, waiting: _Waiting) -> None:
        """Advance the handshake and read what arrived; hand the request over once its head is
        complete."""
        sock = waiting.sock
        try:
            if waiting.handshaking:
                sock.do_handshake()  # type: ignore[attr-defined]
                waiting.handshaking = False
                self._selector.modify(sock, selectors.EVENT_READ, waiting)
            while True:
                data = sock.recv(READ_SIZE)
                if not data:
                    self._drop(waiting)
                    return
                waiting.head += data
                if _head_complete(waiting.head) or len(waiting.head) > MAX_HEAD \
                        or not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                    break
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, waiting)
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, waiting)
        except BlockingIOError:
            pass
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.debug("%s: connection from %s failed: %s", self._name, waiting.address, exc)
            self._drop(waiting)
            return
        if len(waiting.head) > MAX_HEAD:
            self._refuse(waiting, TOO_LARGE)
        elif _head_complete(waiting.head):
            self._hand_over(waiting)

    def _hand_over(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        waiting.sock.setblocking(True)
        request = Request(waiting.sock, bytes(waiting.head), waiting.deadline)
        try:
            self._requests.put_nowait((request, waiting.address))
        except queue.Full:
            log.warning("%s: %d requests are waiting for an answer: 503 to %s", self._name,
                        self._limits.queue, waiting.address[0])
            self._refuse(waiting, BUSY)

    def _refuse(self, waiting: _Waiting, answer: bytes) -> None:
        """Answer without a worker (the answer fits any socket buffer: one try), and close."""
        self._forget(waiting)
        try:
            waiting.sock.setblocking(False)
            waiting.sock.send(answer)
        except (OSError, ValueError):
            pass
        _close(waiting.sock)

    def _expire(self, now: float) -> None:
        while self._waiting:
            oldest = next(iter(self._waiting.values()))
            if oldest.deadline > now:
                return
            log.debug("%s: no request from %s within %gs", self._name, oldest.address,
                      self._limits.deadline)
            self._drop(oldest)

    def _forget(self, waiting: _Waiting) -> None:
        if self._waiting.pop(waiting.sock, None) is not None:
            self._selector.unregister(waiting.sock)

    def _drop(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        _close(waiting.sock)

    # -- the workers --------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._requests.get()) is not None:
            request, address = item
            try:
                if time.monotonic() < request.deadline:
                    self._handler(request, address, self)  # type: ignore[arg-type]
            except (OSError, ValueError) as exc:
                log.debug("%s: answering %s failed: %s", self._name, address, exc)
            except Exception:  # noqa: BLE001 - a failing handler must not end the worker
                log.exception("%s: answering %s failed", self._name, address)
            finally:
                _close(request.sock)
