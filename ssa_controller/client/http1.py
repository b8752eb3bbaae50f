"""A keep-alive HTTP/1.1 client for the API server: its request-response calls and its watches.

Why not urllib3: one GET against the local API server costs the client 690-1,030 µs of CPU
through urllib3, 400-540 µs through http.client alone (its header parsing goes through the
email package) and 150-190 µs when the request is written and the answer read over the TLS
socket directly (tests/bench/request_cost.py), and the controller sends three such requests
per change and reads every watch event. Requests through a proxy take urllib3 (see
urllib3transport).

What is spoken is what the API server speaks: a request with a Content-Length body; an answer
with a status line, headers, and a body framed by Content-Length, by chunked transfer coding
(trailers read and dropped) or by the end of the connection; `Connection: close`. No redirects,
no compression, no `Expect: 100-continue`. A connection that failed in any way is closed, never
reused; an idle pooled connection that the server closed (readable with no request sent) is
replaced before it is used. Every request is bounded by a timeout per read and, if given, a
total deadline that covers it all: the connect, the TLS handshake, the send (nothing is sent
once it has passed) and every read to the last byte, however slowly the server drips it (each
receive is bounded by the time left). A streamed answer (a watch) is opened within its deadline,
then read piece by piece as it arrives, can be aborted from another thread, and its connection
is closed when it ends, never pooled again. `Pool` implements the transport interface
(transport.Transport).
"""

from __future__ import annotations

import io
import re
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from .transport import READ_SIZE, Response, SocketOption, TransportError, within

MAX_LINE = 65536
"""The longest status or header line accepted."""
MAX_HEADERS = 256
NO_BODY_STATUSES = frozenset({204, 304})
_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9]) ([0-9]{3})(?: [^\x00\n\r\x0b\x0c]*)?")
"""A status line as RFC 9112 and h11 read it (a reason phrase optional, without NUL or line
breaks), of HTTP/1.x only."""
_FIELD = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)"
                    rb"[ \t]*")
"""A header (or trailer) line: a token, a colon, and a value of visible characters (bytes past
ASCII too) and inner spaces or tabs, whitespace around it dropped (RFC 9110 5.5; h11's rule)."""
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
"""A chunk size as Go's net/http reads it: hex digits only (no sign, prefix or underscore), at
most 16 of them."""
_DIGITS = re.compile(r"[0-9]+")


def authority(host: str, port: int | str | None = None) -> str:
    """host[:port] for a URL or a Host header, an IPv6 address in brackets (Go's
    net.JoinHostPort when a port is given)."""
    bracketed = f"[{host}]" if ":" in host or "%" in host else host
    return bracketed if port is None else f"{bracketed}:{port}"


class _BoundedReceive(io.RawIOBase):
    """A socket's bytes, each receive bounded by the read timeout and by the time left before
    the deadline, if there is one: a server that drips its answer byte by byte cannot stretch a
    read past the deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.timeout = 0.0
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.sock.settimeout(within(self.timeout, self.deadline))
        return self.sock.recv_into(buffer)


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._receive = _BoundedReceive(sock)
        self.reader = io.BufferedReader(self._receive, READ_SIZE)

    def bound(self, read_timeout: float, deadline: float | None) -> None:
        """Bound each read from now on by `read_timeout` and, if given, `deadline`."""
        self._receive.timeout, self._receive.deadline = read_timeout, deadline

    def dropped(self) -> bool:
        """Whether the idle connection has something to read: the server closed it (or sent
        what nobody asked for); either way it cannot carry a request."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        for closable in (self.reader, self.sock):
            try:
                closable.close()
            except OSError:
                pass


class _Reader:
    """Reads one answer from a connection, each read bounded as the connection says."""

    def __init__(self, connection: _Connection) -> None:
        self._file = connection.reader

    def line(self, *, crlf: bool = False) -> bytes:
        """The next line, its line ending (LF or CR LF; with `crlf`, CR LF only) dropped."""
        line = self._file.readline(MAX_LINE + 1)
        if not line:
            raise TransportError("the server closed the connection")
        if not line.endswith(b"\n"):
            raise TransportError("the connection ended mid-line" if len(line) <= MAX_LINE
                                 else "a line of the answer is too long")
        if line.endswith(b"\r\n"):
            return line[:-2]
        if crlf:
            raise TransportError(f"a line not ended by CR LF: {line[:80]!r}")
        return line[:-1]

    def crlf(self) -> bool:
        """Whether the next two bytes are CR LF."""
        return self._file.read(2) == b"\r\n"

    def pieces(self, size: int) -> Iterator[bytes]:
        """The next `size` bytes, in pieces of at most READ_SIZE."""
        left = size
        while left:
            data = self._file.read(min(left, READ_SIZE))
            if not data:
                raise TransportError(f"the connection ended {left} bytes before the end of "
                                     "the body")
            left -= len(data)
            yield data

    def some(self) -> bytes:
        """What has arrived (waiting for at least a byte); b"" at the end of the connection."""
        return self._file.read1(READ_SIZE)


def _fields(reader: _Reader) -> dict[str, str]:
    """The header (or trailer) lines up to the blank line that ends them: names in lower case,
    the values of a repeated header joined by ", ", a folded line (obs-fold) joined to the line
    before by a space (RFC 9112 5.2)."""
    lines: list[bytes] = []
    for _ in range(MAX_HEADERS + 1):
        line = reader.line()
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if not lines:
                raise TransportError(f"a folded line before any header: {line[:80]!r}")
            lines[-1] += b" " + line.lstrip(b" \t")
        else:
            lines.append(line)
    else:
        raise TransportError(f"more than {MAX_HEADERS} header lines")
    fields: dict[str, str] = {}
    for line in lines:
        found = _FIELD.fullmatch(line)
        if found is None:
            raise TransportError(f"malformed header line: {line[:80]!r}")
        key, text = found[1].lower().decode("latin-1"), found[2].decode("latin-1")
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    return fields


def _head(reader: _Reader) -> tuple[int, bool, dict[str, str]]:
    """The status, whether the connection may carry another request, and the headers (1xx
    interim answers skipped; a 101 refused: no request asks to switch protocols)."""
    while True:
        status_line = reader.line()
        found = _STATUS_LINE.fullmatch(status_line)
        if found is None:
            raise TransportError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(found[2])
        if status < 100 or status == 101:
            raise TransportError(f"an answer of status {status}")
        headers = _fields(reader)
        if status >= 200:
            tokens = headers.get("connection", "").lower()
            keep = "close" not in tokens and (found[1] != b"0" or "keep-alive" in tokens)
            return status, keep, headers


def _chunks(reader: _Reader) -> Iterator[bytes]:
    """A chunked body's pieces (trailers read, checked and dropped). A chunk size line ends
    with CR LF, optional whitespace before it only after a size without extension (h11's
    rule); a chunk's data ends with CR LF (Go's)."""
    while True:
        line = reader.line(crlf=True)
        size_text, semicolon, _ = line.partition(b";")
        if not semicolon:
            size_text = size_text.rstrip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise TransportError(f"malformed chunk size: {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            _fields(reader)
            return
        yield from reader.pieces(size)
        if not reader.crlf():
            raise TransportError("a chunk is longer than its size")


def _content_length(value: str) -> int:
    """A Content-Length, given once or repeated with the same value (RFC 9110 8.6)."""
    lengths = {length.strip() for length in value.split(",")}
    length = lengths.pop()
    if lengths or not _DIGITS.fullmatch(length):
        raise TransportError(f"malformed Content-Length: {value[:20]!r}")
    return int(length)


def _until_closed(reader: _Reader) -> Iterator[bytes]:
    while data := reader.some():
        yield data


def _pieces(reader: _Reader, method: str, status: int,
            headers: Mapping[str, str]) -> tuple[Iterator[bytes], bool]:
    """The body's pieces, read as they are iterated, and whether the body is framed (False: it
    runs to the end of the connection). Only the chunked transfer coding is spoken; the framing
    headers must be sound even where no body follows."""
    coding = headers.get("transfer-encoding")
    if coding is not None and coding.lower() != "chunked":
        raise TransportError(f"unsupported Transfer-Encoding: {coding[:40]!r}")
    length = headers.get("content-length")
    size = None if length is None else _content_length(length)
    if method == "HEAD" or status in NO_BODY_STATUSES:
        return iter(()), True
    if coding is not None:
        return _chunks(reader), True
    if size is not None:
        return reader.pieces(size), True
    return _until_closed(reader), False


def _transport_error(exc: OSError | ValueError) -> TransportError:
    return TransportError(f"{type(exc).__name__}: {exc}")


@contextmanager
def _closed_on_failure(connection: _Connection) -> Iterator[None]:
    """Close the connection if the block fails, raising TransportError (socket.timeout and
    ssl.SSLError are OSErrors)."""
    try:
        yield
    except TransportError:
        connection.close()
        raise
    except (OSError, ValueError) as exc:
        connection.close()
        raise _transport_error(exc) from exc


def _request_head(method: str, target: str, host: str, headers: Mapping[str, str],
                  body: bytes | None) -> bytes:
    if "\r" in target or "\n" in target:
        raise TransportError("a line break in the request target")
    for name, value in headers.items():
        if "\r" in value or "\n" in value:  # named, never shown: a header may be a credential
            raise TransportError(f"a line break in the value of header {name}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Pool:
    """Keep-alive connections to one server: at most `maxsize` kept idle, more opened while
    more requests are in flight. Thread-safe."""

    def __init__(self, host: str, port: int, *, tls: Callable[[], ssl.SSLContext] | None,
                 server_hostname: str | None = None,
                 socket_options: Iterable[SocketOption] = (), maxsize: int = 16,
                 connect_timeout: float = 10.0) -> None:
        """`tls` makes the TLS context (None: plain TCP); it is called at the first connect,
        so that a certificate file that cannot be loaded fails a request, not the client."""
        self._address = (host, port)
        self._host_header = authority(host, None if port == (443 if tls else 80) else port)
        self._make_tls, self._server_hostname = tls, server_hostname or host
        self._tls: ssl.SSLContext | None = None
        self._socket_options = list(socket_options)
        self._maxsize, self._connect_timeout = maxsize, connect_timeout
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._closed = False

    def request(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes | None, timeout: float, deadline: float | None = None) -> Response:
        """Send one request and read the whole answer. `timeout` bounds each read, `deadline`
        (a time.monotonic() value) the whole exchange, from the connect on. Raises
        TransportError."""
        connection = self._checkout(deadline)
        with _closed_on_failure(connection):
            reader, status, keep, answer_headers = self._exchange(
                connection, method, target, headers, body, timeout, deadline)
            pieces, framed = _pieces(reader, method, status, answer_headers)
            data = b"".join(pieces)
        self._checkin(connection, reusable=keep and framed)
        return Response(status, answer_headers, data)

    def stream(self, method: str, target: str, headers: Mapping[str, str], timeout: float,
               deadline: float | None = None) -> Stream:
        """Send one request and read the answer's head, by `deadline` if given; its body is
        read from the Stream as it arrives (a watch), each read bounded by `timeout`. Raises
        TransportError."""
        connection = self._checkout(deadline)
        with _closed_on_failure(connection):
            reader, status, _, answer_headers = self._exchange(
                connection, method, target, headers, None, timeout, deadline)
            pieces, _ = _pieces(reader, method, status, answer_headers)
            connection.bound(timeout, None)
        return Stream(connection, status, answer_headers, pieces)

    def _exchange(self, connection: _Connection, method: str, target: str,
                  headers: Mapping[str, str], body: bytes | None, timeout: float,
                  deadline: float | None) -> tuple[_Reader, int, bool, dict[str, str]]:
        """Send the request (not once the deadline passed); the answer's reader, status,
        whether the connection may carry another request, and headers."""
        head = _request_head(method, target, self._host_header, headers, body)
        connection.sock.settimeout(within(timeout, deadline))
        connection.sock.sendall(head + body if body else head)
        connection.bound(timeout, deadline)
        reader = _Reader(connection)
        return (reader, *_head(reader))

    def _checkout(self, deadline: float | None) -> _Connection:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not connection.dropped():
                    return connection
                connection.close()
        return self._connect(deadline)

    def _connect(self, deadline: float | None) -> _Connection:
        """A new connection; the connect and the TLS handshake each bounded by the connect
        timeout and both by the deadline."""
        try:
            sock = socket.create_connection(
                self._address, timeout=within(self._connect_timeout, deadline))
        except OSError as exc:
            raise TransportError(f"cannot connect to {self._host_header}: {exc}") from exc
        try:
            for option in self._socket_options:
                sock.setsockopt(*option)
            if self._make_tls is not None:
                if self._tls is None:
                    self._tls = self._make_tls()
                sock.settimeout(within(self._connect_timeout, deadline))
                sock = self._tls.wrap_socket(sock, server_hostname=self._server_hostname)
        except (OSError, TransportError) as exc:  # ssl.SSLError is an OSError
            sock.close()
            raise TransportError(f"TLS with {self._host_header}: {exc}") from exc
        return _Connection(sock)

    def _checkin(self, connection: _Connection, reusable: bool) -> None:
        with self._lock:
            if reusable and not self._closed and len(self._idle) < self._maxsize:
                self._idle.append(connection)
                return
        connection.close()

    def clear(self) -> None:
        """Close the idle connections; those in use are closed when their request ends."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def close(self) -> None:
        """Close the idle connections and every connection still in use once its request
        ends."""
        with self._lock:
            self._closed = True
        self.clear()


class Stream:
    """An answer whose body is read as it arrives (a watch). Its connection is never pooled
    again: it is closed when the body ends or fails, or by close()."""

    def __init__(self, connection: _Connection, status: int, headers: Mapping[str, str],
                 pieces: Iterator[bytes]) -> None:
        self.status = status
        self.headers = headers
        """Header names in lower case, repeated ones joined (as Response's)."""
        self._connection, self._pieces = connection, pieces

    def chunks(self) -> Iterator[bytes]:
        """The body's pieces as they arrive. Raises TransportError."""
        try:
            yield from self._pieces
        except (OSError, ValueError) as exc:
            raise _transport_error(exc) from exc
        finally:
            self._connection.close()

    def read(self) -> bytes:
        """The whole body. Raises TransportError."""
        return b"".join(self.chunks())

    def abort(self) -> None:
        """End a read blocked in another thread: it sees the connection end. Never raises."""
        try:  # the socket's own shutdown: SSLSocket's also drops the TLS state the reading
            socket.socket.shutdown(self._connection.sock, socket.SHUT_RDWR)  # thread is using
        except OSError:
            pass

    def close(self) -> None:
        """Close the connection (not while another thread reads: abort() that one)."""
        self._connection.close()


def tls_context(*, verify: bool, ca_file: str | None, cert_file: str | None,
                key_file: str | None) -> ssl.SSLContext:
    """A client TLS context: the server verified against `ca_file` (the system's CAs if None)
    unless `verify` is False; a client certificate if `cert_file` is given."""
    if verify:
        context = ssl.create_default_context(cafile=ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context
