"""An open watch: the events of a streamed watch answer, decoded as they arrive, with a
deadline after which a watch still open is stalled, and a close that may come from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import orjson

from .resources import Obj
from .transport import Streamed, TransportError
from .wire import ApiError, unanswered

WATCH_STALLED = "WatchStalled"
"""The reason of the ApiError(0) a watch raises when it outlives its deadline."""


class WatchStream:
    """An open watch. Iterate it for the decoded events ({"type", "object"}); iteration ends when
    the server ends the watch or after `close()`.

    Errors while reading raise ApiError(0, "TransportError", ...), except after `close()`: a read
    that close() aborted just ends the iteration. `close()` may be called from any thread (to
    abort a blocked read), any number of times, and never raises. The body is closed when
    iteration ends or close() is called, whichever is first.

    With a `deadline`, a watch still open that many seconds after it started is stalled: it is
    aborted (from a timer thread) and iteration raises ApiError(0, WATCH_STALLED); then
    `on_stall` is called.
    """

    def __init__(self, body: Streamed, deadline: float | None = None,
                 on_stall: Callable[[], None] | None = None) -> None:
        self._body = body
        self._lock = threading.Lock()
        self._closed = False      # close() was called (or iteration finished, or it stalled)
        self._stalled = False     # the deadline passed before the watch ended
        self._reading = False     # a thread is (about to be) blocked reading the response
        self._released = False
        self._deadline = deadline
        self._on_stall = on_stall
        self._timer: threading.Timer | None = None
        if deadline is not None:
            self._timer = threading.Timer(deadline, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def __iter__(self) -> Iterator[Obj]:
        return self._events()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _events(self) -> Iterator[Obj]:
        chunks = self._body.chunks()
        buffer = b""
        try:
            while True:
                with self._lock:
                    if self._ended():
                        return
                    self._reading = True
                try:
                    chunk = next(chunks, None)
                except Exception as exc:
                    with self._lock:
                        if self._ended():  # close() aborted the read: not an error
                            return
                    if isinstance(exc, TransportError):
                        raise unanswered(exc) from exc
                    raise
                finally:
                    with self._lock:
                        self._reading = False
                if chunk is None:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)
        finally:
            with self._lock:
                self._closed = True
            self._release()

    def close(self) -> None:
        """Stop the watch: abort a read blocked in another thread, release the response."""
        self._shut(stalled=False)

    def _ended(self) -> bool:
        """Whether iteration is over (call with the lock held); raises if the watch stalled."""
        if self._stalled:
            raise ApiError(0, WATCH_STALLED,
                           f"the watch did not end within {self._deadline:g}s of its start")
        return self._closed

    def _expire(self) -> None:
        if self._shut(stalled=True) and self._on_stall is not None:
            self._on_stall()

    def _shut(self, *, stalled: bool) -> bool:
        """Close the watch (stalled or not); False if it was closed already."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self._stalled = stalled
            if self._reading:
                # Another thread is blocked reading: wake it up; it closes the body. Done under
                # the lock, so that thread cannot move on and reuse the socket meanwhile.
                self._body.abort()
                return True
        self._release()
        return True

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        if self._timer is not None:
            self._timer.cancel()
        self._body.close()
