"""A differential property test of http1's answer parsing against h11 (a test-only dependency):
generated HTTP/1.1 answers (framed by Content-Length, chunked or the end of the connection; chunk
extensions, trailers, 1xx interim answers, folded and repeated headers, odd whitespace, odd bytes,
truncations) are read by http1.Pool from a loopback server and by an h11 client, and both must
agree (status, headers, body) or both refuse (http1 with a TransportError).

Where http1 is deliberately stricter than h11 the property says so (`expected_refusal`): it speaks
HTTP/1.x only (h11 reads any d.d version). Header values are compared as http1 gives them (a
repeated header's values joined by ", "); Content-Length and Transfer-Encoding, which h11
normalises, are compared through the body they frame.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ssa_controller.client.http1 import Pool
from ssa_controller.client.transport import TransportError

Outcome = tuple[int, dict[str, str], bytes] | None
"""(status, headers, body) of an answer read whole, or None: refused."""
NORMALISED = ("content-length", "transfer-encoding")


# --------------------------------------------------------------------------- the two readers


class Answerer:
    """A loopback server that answers each connection's request with the next queued bytes,
    then closes the connection."""

    def __init__(self) -> None:
        self.answers: queue.Queue[bytes] = queue.Queue()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
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
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        break
                    request += data
                conn.sendall(self.answers.get(timeout=5))
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)  # until the client closes: all it sent is read, so no RST

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture(scope="module")
def answerer() -> Iterator[Answerer]:
    server = Answerer()
    yield server
    server.stop()


def builtin(server: Answerer, data: bytes) -> Outcome:
    server.answers.put(data)
    pool = Pool("127.0.0.1", server.port, tls=None)
    try:
        answer = pool.request("GET", "/", {"Accept": "application/json"}, None, 5.0,
                              time.monotonic() + 5.0)
    except TransportError:
        return None
    finally:
        pool.close()
    return answer.status, dict(answer.headers), answer.data


def reference(data: bytes) -> Outcome:
    """What h11 makes of `data` as the answer to a GET, the connection ending after it."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "127.0.0.1")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    status, headers, body = 0, {}, b""
    try:
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    key, text = name.decode("latin-1"), value.decode("latin-1")
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body
            elif not isinstance(event, h11.InformationalResponse):
                return None  # NEED_DATA or ConnectionClosed: the answer was cut
    except h11.RemoteProtocolError:
        return None


def comparable(outcome: Outcome) -> Outcome:
    if outcome is None:
        return None
    status, headers, body = outcome
    return status, {k: v for k, v in headers.items() if k not in NORMALISED}, body


_VERSION = re.compile(rb"(?:^|\n)HTTP/([02-9])\.[0-9] ")


def expected_refusal(data: bytes) -> bool:
    """Where http1 refuses what h11 takes: a status line of an HTTP version other than 1.x."""
    return _VERSION.search(data) is not None


# --------------------------------------------------------------------------- generated answers

def mostly(usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes],
           one_in: int = 30) -> st.SearchStrategy[bytes]:
    """`usual`, and `odd` once in `one_in` draws: most answers stay readable."""
    return st.integers(1, one_in).flatmap(lambda n: odd if n == 1 else usual)


EOL = mostly(st.just(b"\r\n"), st.just(b"\n"), 6)
OWS = st.sampled_from([b"", b"", b" ", b"  ", b"\t", b" \t"])
VERSIONS = mostly(st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0"]), st.sampled_from(
    [b"HTTP/2.0", b"HTTP/1.10", b"http/1.1", b"HTTP/1", b"HTTP/1.1 "]))
NAMES = mostly(st.sampled_from([b"X-A", b"x-a", b"Warning", b"X-B", b"Content-Type",
                                b"Connection", b"Retry-After", b"X_~!"]),
               st.sampled_from([b"X A", b"X-A ", b"", b"X(A)", b"\xe9", b" X-A"]))
VALUES = mostly(st.lists(st.sampled_from(list(b"abcxyz019,;=\"'/ \t\x01\x7f\x80\xe9\xff")),
                         max_size=12).map(bytes),
                st.lists(st.sampled_from(list(b"ab \x00\x0b\x0c\x0d")), min_size=1,
                         max_size=4).map(bytes))
REASONS = mostly(st.sampled_from([b"OK", b"Not Found", b"", b" OK", b"Weird\tReason",
                                  b"\xe9t\xe9"]), st.sampled_from([b"O\x00K", b"O\x0bK"]))


@dataclass(frozen=True)
class Field:
    name: bytes
    value: bytes
    before: bytes
    after: bytes
    folded: bytes | None  # a continuation line's text (its leading whitespace included)


FIELDS = st.builds(Field, NAMES, VALUES, OWS, OWS,
                   st.one_of(*[st.none()] * 6,
                             st.tuples(st.sampled_from([b" ", b"\t", b"  "]), VALUES)
                             .map(b"".join)))


@st.composite
def head_lines(draw: st.DrawFn, fields: list[Field]) -> bytes:
    lines = b""
    for field in fields:
        lines += field.name + b":" + field.before + field.value + field.after + draw(EOL)
        if field.folded is not None:
            lines += field.folded + draw(EOL)
    return lines + draw(EOL)


@st.composite
def status_line(draw: st.DrawFn, codes: st.SearchStrategy[int]) -> bytes:
    code = str(draw(codes)).zfill(3).encode()
    code = draw(mostly(st.just(code), st.sampled_from([code + b"0", code[:2], b"abc"])))
    reason = draw(st.one_of(st.none(), REASONS))
    return draw(VERSIONS) + b" " + code + (b"" if reason is None else b" " + reason) + draw(EOL)


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    encoded = b""
    for piece in [p for p in pieces if p] + [b""]:
        size = f"{len(piece):x}".encode()
        size = size.zfill(draw(st.sampled_from([len(size)] * 4 + [len(size) + 2, 16])))
        size = draw(mostly(st.sampled_from([size, size.upper()]),
                           st.sampled_from([size + b"g", b"+" + size])))
        extension = draw(mostly(st.sampled_from([b""] * 4 + [b";a=b", b";x", b"; a=\"b\""]),
                                st.just(b" ;x")))
        encoded += size + extension + draw(st.sampled_from([b"", b"", b" "])) + draw(
            mostly(st.just(b"\r\n"), st.just(b"\n")))
        if piece:
            encoded += piece + draw(mostly(st.just(b"\r\n"), st.sampled_from([b"\n", b"x\r\n"])))
    trailers = draw(st.lists(FIELDS, max_size=2))
    return encoded + draw(head_lines(trailers))


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    interim = b""
    for _ in range(draw(st.integers(0, 2))):
        interim += draw(status_line(st.sampled_from([100, 102, 103] * 10 + [101, 99])))
        interim += draw(head_lines(draw(st.lists(FIELDS, max_size=2))))
    fields = draw(st.lists(FIELDS, max_size=5))
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["length", "chunked", "close", "both"] * 3 + ["odd"]))
    framed = b""
    if framing in ("length", "both"):
        length = str(len(body)).encode()
        framed += b"Content-Length: " + draw(mostly(
            st.sampled_from([length] * 4 + [length + b", " + length, b"0" + length]),
            st.sampled_from([str(len(body) + 3).encode(), b"+" + length, length + b" x"]))
        ) + b"\r\n"
        if draw(st.integers(0, 5)) == 0:
            framed += b"Content-Length: " + draw(st.sampled_from(
                [length, str(len(body) + 1).encode()])) + b"\r\n"
    if framing in ("chunked", "both", "odd"):
        coding = b"chunked" if framing != "odd" else draw(st.sampled_from(
            [b"Chunked", b"gzip, chunked", b"", b"chunked, chunked", b"identity", b" chunked"]))
        framed += b"Transfer-Encoding: " + coding + b"\r\n"
    content = draw(chunked(body)) if framing in ("chunked", "both", "odd") else body
    final = draw(status_line(st.sampled_from([200, 201, 204, 304, 404, 409, 500])))
    whole = interim + final + framed + draw(head_lines(fields)) + content
    cut = draw(st.one_of(*[st.none()] * 9, st.integers(0, len(whole))))
    return whole if cut is None else whole[:cut]


# --------------------------------------------------------------------------- the property


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
@example(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\n{}")
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ;x\r\n{}\r\n0\r\n\r\n")
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nbad\r\n\r\n")
def test_http1_reads_an_answer_as_h11_does_or_refuses_it(answerer: Answerer, data: bytes) -> None:
    ours, theirs = builtin(answerer, data), reference(data)
    if expected_refusal(data):
        assert ours is None
    else:
        assert comparable(ours) == comparable(theirs)


def test_the_reference_refuses_and_reads_as_the_property_assumes() -> None:
    """Guards the oracle: h11 reads a plain answer, refuses a cut one, joins repeated headers."""
    assert reference(b"HTTP/1.1 200 OK\r\nWarning: a\r\nWarning: b\r\nContent-Length: 2\r\n\r\n"
                     b"{}") == (200, {"warning": "a, b", "content-length": "2"}, b"{}")
    assert reference(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}") is None
    assert reference(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n") == (
        204, {}, b"")
