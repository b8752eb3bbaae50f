"""Unit tests for serving.httpserver: a client can hold sockets, never threads or time.

Issue 26.3: one thread per connection without a cap, no socket timeout on the plain port (300
connections sending half a request line held 300 threads after 12 s), and TLS timing out each
read only, so a client trickling bytes stayed for ever.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ssa_controller.envtest import poll_until
from ssa_controller.serving.httpserver import BackgroundHttpServer, Limits, QuietHandler
from ssa_controller.serving.servingcert import ContextSource, self_signed_context

BIG = b"x" * (8 << 20)
RELEASE, STARTED = threading.Event(), threading.Event()


class Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/big":
            self.reply(200, BIG, "text/plain")
        elif self.path == "/slow":
            STARTED.set()
            RELEASE.wait(10)
            self.reply(200, b"slow\n", "text/plain")
        else:
            self.reply(200, b"ok\n", "text/plain")


@pytest.fixture(scope="module")
def tls() -> ContextSource:
    return self_signed_context()


@pytest.fixture
def serve(tls: ContextSource) -> Iterator[Callable[..., BackgroundHttpServer]]:
    servers: list[BackgroundHttpServer] = []

    def start(secure: bool = False, **limits: object) -> BackgroundHttpServer:
        extra = {"limits": Limits(**limits)} if limits else {}  # type: ignore[arg-type]
        server = BackgroundHttpServer("127.0.0.1", 0, Handler, "test-server",
                                      tls if secure else None, **extra)
        server.start()
        servers.append(server)
        return server

    yield start
    RELEASE.set()
    for server in servers:
        server.stop()
    RELEASE.clear()
    STARTED.clear()


def connect(server: BackgroundHttpServer, secure: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if not secure:
        return sock
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context.wrap_socket(sock)


def get(server: BackgroundHttpServer, path: str = "/", secure: bool = False) -> bytes:
    """The whole answer to GET `path` (the server closes the connection after it)."""
    with connect(server, secure) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_idle_and_half_sent_connections_hold_no_thread(
        serve: Callable[..., BackgroundHttpServer], secure: bool) -> None:
    server = serve(secure)
    threads = threading.active_count()
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(400)]
    for sock in held[:100]:
        sock.sendall(b"GET /healthz HT" if not secure else b"\x16\x03\x01")
    try:
        started = time.monotonic()
        answer = get(server, secure=secure)
        assert time.monotonic() - started < 2.0
        assert answer.startswith(b"HTTP/1.0 200 OK") and answer.endswith(b"\r\n\r\nok\n")
        assert threading.active_count() <= threads
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_a_client_trickling_its_request_is_cut_at_the_deadline(
        serve: Callable[..., BackgroundHttpServer], secure: bool) -> None:
    server = serve(secure, deadline=1.0)
    sock = connect(server, secure)
    started = time.monotonic()
    with sock:
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"y" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if closed_by_server(sock):
                break
            time.sleep(0.1)  # the trickle under test, not a synchronisation
        assert closed_by_server(sock)
    assert time.monotonic() - started < 3.0


def test_a_reader_too_slow_for_the_answer_is_cut_at_the_deadline(
        serve: Callable[..., BackgroundHttpServer]) -> None:
    server = serve(deadline=1.0, workers=1)
    with connect(server, False) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        started = time.monotonic()
        poll_until(lambda: get(server).endswith(b"ok\n"), timeout=5,
                   message="the only worker free again")
        assert time.monotonic() - started < 3.0


def test_the_connection_waiting_longest_makes_room_for_a_new_one(
        serve: Callable[..., BackgroundHttpServer]) -> None:
    server = serve(pending=8)
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        poll_until(lambda: all(closed_by_server(s) for s in held[:12]), timeout=5,
                   message="the 12 oldest idle connections closed")
        assert not any(closed_by_server(s) for s in held[12:])
        assert get(server).endswith(b"ok\n")
    finally:
        for sock in held:
            sock.close()


def answered_at_once(server: BackgroundHttpServer) -> bytes | None:
    """The answer to GET / if it comes within half a second, else None (the request may still
    be waiting in the queue)."""
    with connect(server, False) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        sock.settimeout(0.5)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None


def test_beyond_the_queue_a_request_is_answered_503_at_once(
        serve: Callable[..., BackgroundHttpServer]) -> None:
    server = serve(workers=1, queue=1)
    with connect(server, False) as slow:
        slow.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        assert STARTED.wait(5), "the only worker answering /slow"
        # The first of these waits in the queue; then the queue is full.
        answer = poll_until(lambda: answered_at_once(server), timeout=5,
                            message="an answer while the worker and the queue are taken")
        assert answer.startswith(b"HTTP/1.0 503 Service Unavailable")
        RELEASE.set()
        slow.settimeout(5)
        assert slow.recv(65536).startswith(b"HTTP/1.0 200")


def test_a_head_too_large_is_answered_431(serve: Callable[..., BackgroundHttpServer]) -> None:
    server = serve()
    with connect(server, False) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.0 431")
