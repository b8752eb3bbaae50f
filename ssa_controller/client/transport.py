"""The transport interface: what carries the client's requests to the API server.

A transport holds the connections to one server and speaks HTTP/1.1 over them. `Kube` sends
every request through one (see pools for how it is chosen and rebuilt); two implement it: the
built-in keep-alive client `http1.Pool` (the default) and `urllib3transport.Urllib3Pool` (through
an HTTP(S) proxy, or when `client.transport: urllib3` asks for it). Its contract:

- `request` sends one request and reads the whole answer, each read bounded by `timeout` and,
  with a `deadline` (a time.monotonic() value), all of it (connect, TLS handshake, send, every
  read) by that deadline; nothing is sent once the deadline has passed.
- `stream` sends one request and reads the answer's head, bounded the same way; its body is then
  read piece by piece as it arrives (a watch), each read bounded by `timeout` alone. Its
  connection is closed when the stream is closed, aborted or fails (http1 closes it at the
  body's end too; urllib3 pools it again).
- Every failure to get a whole answer (connect, TLS, timeout, a malformed or cut answer) raises
  TransportError; a connection that failed in any way is closed, never reused. An answer of any
  status is an answer: the caller decides what a status means. Redirects are not followed.
- Header names are lower case; a header sent more than once has its values joined by ", "
  (RFC 9110, 5.3), so repeated `Warning` headers are all kept.
- `clear` closes the idle connections (those in use are closed when their request ends);
  `close` does that and closes every connection still in use once its request ends. Both may
  be called from any thread. All methods are thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

SocketOption = tuple[int, int, int]
"""(level, option, value) for socket.setsockopt."""
READ_SIZE = 65536
"""The most read at once from a streamed body or one that runs to the end of its connection."""


class TransportError(Exception):
    """The request did not get a whole answer: connect, TLS, timeout, or a malformed reply."""


def time_left(deadline: float) -> float:
    """Seconds left before `deadline` (a time.monotonic() value); TransportError if none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError("the request's deadline passed")
    return left


def within(timeout: float, deadline: float | None) -> float:
    """`timeout`, cut to the time left before `deadline` if there is one."""
    return timeout if deadline is None else min(timeout, time_left(deadline))


@dataclass(frozen=True)
class Response:
    """A whole answer."""

    status: int
    headers: Mapping[str, str]
    """Header names in lower case; a header sent more than once has its values joined by ", "
    (RFC 9110, 5.3)."""
    data: bytes


class Streamed(Protocol):
    """An answer whose head has been read and whose body is read as it arrives."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]:
        """As Response's."""

    def chunks(self) -> Iterator[bytes]:
        """The body's pieces as they arrive; the connection is closed when they end or fail.
        Raises TransportError."""

    def read(self) -> bytes:
        """The whole body. Raises TransportError."""

    def abort(self) -> None:
        """End a read blocked in another thread: it sees the connection end. Never raises."""

    def close(self) -> None:
        """Close the connection (not while another thread reads: abort() that one). Never
        raises."""


class Transport(Protocol):
    """Connections to one API server (see the module docstring for the contract)."""

    def request(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes | None, timeout: float, deadline: float | None = None
                ) -> Response:
        """Send `target` (path and query) and read the whole answer."""

    def stream(self, method: str, target: str, headers: Mapping[str, str], timeout: float,
               deadline: float | None = None) -> Streamed:
        """Send `target` and read the answer's head (by `deadline`, if given); its body is read
        from the Streamed as it arrives."""

    def clear(self) -> None:
        """Close the idle connections."""

    def close(self) -> None:
        """Close every connection, those in use once their request ends."""
