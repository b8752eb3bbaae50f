"""Unit tests for ssa_controller.client.http1 against a scripted loopback server that answers with
exactly the bytes a test gives (framings, malformed answers, closed and silent connections);
TLS, credentials and proxies through Kube: test_kube.py; the real API server: every
integration test."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ssa_controller.client import http1
from ssa_controller.client.http1 import Pool
from ssa_controller.client.transport import TransportError

Answer = Callable[[bytes], bytes | None]
"""The bytes to answer a request with (given the request's bytes); None: close instead."""
CLOSE = b"<close>"
"""In a script after an answer: the server closes the connection once it has sent it."""


class Script:
    """A TCP server on 127.0.0.1 answering each request with the next scripted answer, one
    connection after another; it records every request and how many connections it accepted."""

    def __init__(self, answers: list[Answer | bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        buffer = b""
        while self.answers and not self.stopped.is_set():
            while b"\r\n\r\n" not in buffer:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
            answer = self.answers.pop(0)
            reply = answer(self.requests[-1]) if callable(answer) else answer
            if reply is None:
                return
            conn.sendall(reply)
            if self.answers and self.answers[0] == CLOSE:
                self.answers.pop(0)
                return

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def script() -> Iterator[Callable[..., Script]]:
    scripts: list[Script] = []

    def start(*answers: Answer | bytes) -> Script:
        scripts.append(Script(list(answers)))
        return scripts[-1]

    yield start
    for started in scripts:
        started.stop()


@pytest.fixture
def pool_for() -> Iterator[Callable[..., Pool]]:
    """pool_for(server or port, tls=None, **kwargs) -> a Pool to 127.0.0.1, closed after the
    test."""
    pools: list[Pool] = []

    def make(server: Script | int, tls: Callable[[], ssl.SSLContext] | None = None,
             **kwargs: Any) -> Pool:
        port = server if isinstance(server, int) else server.port
        pools.append(Pool("127.0.0.1", port, tls=tls, **kwargs))
        return pools[-1]

    yield make
    for pool in pools:
        pool.close()


def ok(body: bytes = b"{}", *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head.encode(), len(body), body)


def get(pool: Pool, timeout: float = 5.0, deadline: float | None = None) -> http1.Response:
    return pool.request("GET", "/version", {"Accept": "application/json"}, None, timeout,
                        deadline)


def test_a_request_is_written_with_host_headers_and_body(script, pool_for) -> None:
    server = script(ok())
    pool = pool_for(server)
    pool.request("PATCH", "/apis/x?fieldManager=m", {"Content-Type": "application/json"},
                 b'{"a":1}', 5.0)
    assert server.requests == [
        b"PATCH /apis/x?fieldManager=m HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}" % server.port]


def test_connections_are_kept_alive_and_reused(script, pool_for) -> None:
    server = script(ok(b'{"n":1}'), ok(b'{"n":2}'), ok(b'{"n":3}'))
    pool = pool_for(server)
    assert [get(pool).data for _ in range(3)] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert server.connections == 1


def test_a_chunked_body_is_joined_and_extensions_and_trailers_are_skipped(
        script, pool_for) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3;ext=1\r\n{\"a\r\n5\r\n\":12}\r\n0\r\nX-Trailer: t\r\n\r\n")
    server = script(chunked, ok(b"after"))
    pool = pool_for(server)
    assert get(pool).data == b'{"a":12}'
    assert get(pool).data == b"after"  # the connection was left at the next answer
    assert server.connections == 1


def test_headers_are_read_in_lower_case_and_statuses_as_sent(script, pool_for) -> None:
    server = script(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n"
                    b"Content-Length: 2\r\n\r\n{}")
    answer = get(pool_for(server))
    assert (answer.status, answer.headers["retry-after"], answer.data) == (429, "3", b"{}")


def test_a_repeated_header_keeps_every_value(script, pool_for) -> None:
    server = script(b'HTTP/1.1 200 OK\r\nWarning: 299 - "first, with a comma"\r\nX-One: 1\r\n'
                    b'warning: 299 - "second"\r\nContent-Length: 2\r\n\r\n{}')
    answer = get(pool_for(server))
    assert answer.headers["warning"] == '299 - "first, with a comma", 299 - "second"'
    assert answer.headers["x-one"] == "1"


def test_interim_answers_are_skipped_and_no_content_has_no_body(script, pool_for) -> None:
    server = script(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", ok(b"next"))
    pool = pool_for(server)
    assert (get(pool).status, get(pool).data) == (204, b"next")


@pytest.mark.parametrize("answer", [
    ok(b"{}", "Connection: close"),
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
])
def test_a_connection_the_server_closes_after_its_answer_is_not_reused(
        script, answer, pool_for) -> None:
    server = script(answer, ok(b"second"))
    pool = pool_for(server)
    assert get(pool).data == b"{}"
    assert get(pool).data == b"second"
    assert server.connections == 2


def test_a_body_without_length_runs_to_the_end_of_the_connection(script, pool_for) -> None:
    server = script(b"HTTP/1.1 200 OK\r\n\r\n{\"whole\": true}", CLOSE, ok(b"next"))
    pool = pool_for(server)
    assert get(pool).data == b'{"whole": true}'
    assert get(pool).data == b"next"
    assert server.connections == 2


def test_an_idle_connection_the_server_closed_is_replaced_before_use(script, pool_for) -> None:
    server = script(ok(b"first"), CLOSE, ok(b"second"))
    pool = pool_for(server)
    assert get(pool).data == b"first"
    deadline = time.monotonic() + 5
    while not pool._idle[0].dropped():  # until the server's close reached this side
        assert time.monotonic() < deadline, "the server's close never arrived"
        time.sleep(0.01)
    assert get(pool).data == b"second"
    assert server.connections == 2


@pytest.mark.parametrize(("answer", "message"), [
    (b"", "closed the connection"),
    (b"\r\n", "not an HTTP/1.x status line"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "8 bytes before the end"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "malformed Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n",
     "longer than its size"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "ended mid-line"),
])
def test_a_malformed_or_cut_answer_is_a_transport_error_and_its_connection_dropped(
        script, answer, message, pool_for) -> None:
    server = script(answer, CLOSE, ok(b"fresh"))
    pool = pool_for(server)
    with pytest.raises(TransportError, match=message):
        get(pool)
    assert get(pool).data == b"fresh"
    assert server.connections == 2


@pytest.mark.parametrize("size", [b"-1", b"0x3", b"1_0", b"+3", b" 3", b"1" * 17])
def test_a_chunk_size_that_is_not_plain_hex_is_a_transport_error(script, pool_for, size) -> None:
    """As Go's net/http reads them: int(x, 16) would take a sign, a 0x prefix, underscores
    and spaces (a chunk of -1 read to the end of the connection)."""
    server = script(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\n{}}\r\n"
                    b"0\r\n\r\n" % size, CLOSE)
    with pytest.raises(TransportError, match="malformed chunk size"):
        get(pool_for(server))


def test_a_silent_server_is_a_timeout(script, pool_for) -> None:
    server = script(lambda _: time.sleep(1.0) or ok())  # type: ignore[func-returns-value]
    started = time.monotonic()
    with pytest.raises(TransportError, match="timed out"):
        get(pool_for(server), timeout=0.2)
    assert time.monotonic() - started < 0.9


def test_a_server_dripping_its_answer_is_cut_at_the_deadline(script, pool_for) -> None:
    def drip(_: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\n"
    server = script(drip)
    started = time.monotonic()
    with pytest.raises(TransportError):
        get(pool_for(server), timeout=5.0, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 2.0


@contextmanager
def paced(*pieces: tuple[float, bytes]) -> Iterator[int]:
    """The port of a server that answers a request with each piece after its pause (seconds),
    then keeps the connection open until the test ends."""
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                for pause, data in pieces:
                    if done.wait(pause):
                        return
                    try:
                        conn.sendall(data)
                    except OSError:
                        return
                done.wait(30)
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield int(listener.getsockname()[1])
        finally:
            done.set()
            thread.join(5)


def dripping(answer: bytes, at_once: int = 0) -> contextlib.AbstractContextManager[int]:
    """paced(): `answer`'s first `at_once` bytes, then the rest a byte every 50 ms, never
    silent long enough to trip a read timeout."""
    return paced((0.0, answer[:at_once]), *((0.05, bytes([byte])) for byte in answer[at_once:]))


@pytest.mark.parametrize("where", ["head", "body"])
def test_a_server_dripping_bytes_faster_than_the_read_timeout_is_cut_at_the_deadline(
        pool_for, where) -> None:
    """A byte every 50 ms never trips the 5 s read timeout: each receive is bounded by the time
    left before the deadline, so the whole answer is."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    answer = (b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100 + b"\r\n" if where == "head" else
              head + b"x" * 100)
    with dripping(answer, 0 if where == "head" else len(head)) as port:
        started = time.monotonic()
        with pytest.raises(TransportError):
            get(pool_for(port), timeout=5.0, deadline=started + 0.5)
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}",
])
def test_a_body_longer_than_memory_is_a_transport_error(script, pool_for, answer) -> None:
    """Read in pieces: a Content-Length or chunk size no buffer can hold is not asked of one
    (OverflowError, MemoryError) but read until the connection ends."""
    server = script(answer, CLOSE)
    with pytest.raises(TransportError, match="bytes before the end of the body"):
        get(pool_for(server))


def test_a_tls_handshake_that_never_ends_is_cut_at_the_deadline(pool_for) -> None:
    """A server that accepts and never speaks TLS: the request fails at its deadline, not at the
    connect timeout, and no byte of it is sent (only the client's TLS hello arrives)."""
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept_and_listen() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                while data := conn.recv(65536):
                    received.append(data)
        thread = threading.Thread(target=accept_and_listen, daemon=True)
        thread.start()
        pool = pool_for(listener.getsockname()[1], tls=ssl.create_default_context,
                        connect_timeout=10.0)
        started = time.monotonic()
        with pytest.raises(TransportError, match="TLS with 127.0.0.1"):
            get(pool, timeout=10.0, deadline=started + 0.3)
        assert time.monotonic() - started < 1.5
        thread.join(10)
    sent = b"".join(received)
    assert sent.startswith(b"\x16\x03") and b"GET" not in sent  # a TLS hello, no request


def test_nothing_is_sent_once_the_deadline_passed(script, pool_for) -> None:
    server = script(ok(b"first"), ok(b"never asked for"))
    pool = pool_for(server)
    assert get(pool).data == b"first"
    with pytest.raises(TransportError, match="deadline passed"):
        get(pool, deadline=time.monotonic() - 0.001)  # on the pooled connection
    with pytest.raises(TransportError, match="deadline passed"):
        get(pool_for(server), deadline=time.monotonic() - 0.001)  # on a new one
    assert len(server.requests) == 1


def test_a_refused_connection_is_a_transport_error(pool_for) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        pool = pool_for(port)
        with pytest.raises(TransportError, match="cannot connect"):
            get(pool)


def test_a_line_break_in_a_header_value_is_refused_before_anything_is_sent(
        script, pool_for) -> None:
    server = script(ok())
    with pytest.raises(TransportError) as refused:
        pool_for(server).request("GET", "/", {"Authorization": "Bearer s3cr3t\r\nX-Evil: 1"},
                                 None, 5.0)
    assert str(refused.value) == "a line break in the value of header Authorization"
    assert "s3cr3t" not in repr(refused.value)  # issue 26.6: a header value is a credential
    with pytest.raises(TransportError, match="^a line break in the request target$"):
        pool_for(server).request("GET", "/x\r\nX-Evil: 1", {}, None, 5.0)
    assert server.requests == []


def test_a_failed_tls_handshake_is_a_transport_error(pool_for) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.close()  # mid-handshake
        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        pool = pool_for(listener.getsockname()[1], tls=ssl.create_default_context)
        with pytest.raises(TransportError, match="TLS with 127.0.0.1"):
            get(pool)
        thread.join(5)


def test_at_most_maxsize_connections_are_kept_idle(script, pool_for) -> None:
    server = script(ok(), ok(), ok())
    pool = pool_for(server, maxsize=1)
    first, second = pool._checkout(None), pool._checkout(None)
    pool._checkin(first, reusable=True)
    pool._checkin(second, reusable=True)
    assert pool._idle == [first]
    assert second.sock.fileno() == -1  # closed


def test_close_closes_idle_connections_and_those_in_use_when_they_return(
        script, pool_for) -> None:
    server = script(ok(), ok())
    pool = pool_for(server)
    idle, busy = pool._checkout(None), pool._checkout(None)
    pool._checkin(idle, reusable=True)
    pool.close()
    assert idle.sock.fileno() == -1
    pool._checkin(busy, reusable=True)
    assert busy.sock.fileno() == -1 and pool._idle == []


# --------------------------------------------------------------------------- streamed answers


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_streamed_body_is_read_as_it_arrives_and_its_connection_never_pooled(
        pool_for) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    more = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"a\n"))
            more.wait(5)  # the rest only once the client has read the first piece
            conn.sendall(chunk(b"b\n") + b"0\r\n\r\n")
            conn.recv(1)  # kept open until the client closes it

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    pool = pool_for(listener.getsockname()[1])
    try:
        stream = pool.stream("GET", "/watch", {}, timeout=5.0)
        pieces = stream.chunks()
        assert (stream.status, next(pieces)) == (200, b"a\n")
        more.set()
        assert list(pieces) == [b"b\n"]
        server.join(5)
        assert not server.is_alive(), "the stream's connection was not closed at its end"
        assert pool._idle == []
    finally:
        more.set()
        listener.close()


def test_a_streamed_answer_with_a_length_or_none_is_read_whole(script, pool_for) -> None:
    refused = b'{"kind":"Status","reason":"Expired"}'
    server = script(b"HTTP/1.1 410 Gone\r\nContent-Length: %d\r\n\r\n%s" % (len(refused), refused),
                    b"HTTP/1.1 200 OK\r\n\r\nuntil the end", CLOSE)
    pool = pool_for(server)
    gone = pool.stream("GET", "/watch", {}, timeout=5.0)
    assert (gone.status, gone.read()) == (410, refused)
    assert pool.stream("GET", "/watch", {}, timeout=5.0).read() == b"until the end"
    assert server.connections == 2  # a streamed answer's connection is never reused


def test_a_malformed_chunk_mid_stream_is_a_transport_error(script, pool_for) -> None:
    server = script(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"a\n")
                    + b"zz\r\n", CLOSE)
    pieces = pool_for(server).stream("GET", "/watch", {}, timeout=5.0).chunks()
    assert next(pieces) == b"a\n"
    with pytest.raises(TransportError, match="malformed chunk size"):
        next(pieces)
