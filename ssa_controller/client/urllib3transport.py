"""The transport interface (transport.Transport) over urllib3, directly or through an HTTP(S)
proxy. Only this module imports urllib3: a controller on the built-in transport without a proxy
never loads it.

Taken through a proxy (the built-in transport speaks to no proxy) or when `client.transport:
urllib3` asks for it. urllib3 decides how a proxy is spoken to: absolute-form requests to an http
proxy, CONNECT tunnels for TLS through it, Proxy-Authorization from credentials in the proxy URL
(http://user:password@proxy:3128). Its answers are handed back as the interface says: a
`transport.Response` for a whole answer, a `Urllib3Stream` for a streamed one, every urllib3
error as `transport.TransportError`.

One bound is weaker than the built-in transport's: urllib3 applies a request's deadline to the
connect and to each read (the time left when the request was sent), so a server that keeps
dripping bytes, each within that time, can stretch a request past its deadline. A streamed
answer's head is read by its deadline the same way; its body, each read within `timeout`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import urllib3

from .transport import READ_SIZE, Response, SocketOption, TransportError, time_left


def _headers(response: urllib3.BaseHTTPResponse) -> dict[str, str]:
    """Names in lower case, the values of a repeated header joined by ", "."""
    return {name.lower(): response.headers[name] for name in response.headers}


class Urllib3Stream:
    """A streamed urllib3 answer (transport.Streamed)."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = _headers(response)

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._response.stream(READ_SIZE)
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(str(exc)) from exc
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def abort(self) -> None:
        try:
            self._response.shutdown()
        except Exception:  # noqa: BLE001 - e.g. RuntimeError: urllib3 released it already
            pass

    def close(self) -> None:
        """Close the answer and hand its (closed) connection back to the pool; never raises."""
        for release in (self._response.close, self._response.release_conn):
            try:
                release()
            except Exception:  # noqa: BLE001 - releasing must not fail a caller cleaning up
                pass


class Urllib3Pool:
    """Connections to `origin` (scheme://host:port of the API server), through `proxy_url` if
    given (transport.Transport)."""

    def __init__(self, origin: str, *, proxy_url: str | None, verify: bool,
                 ca_file: str | None, cert_file: str | None, key_file: str | None,
                 tls_server_name: str | None, socket_options: list[SocketOption],
                 maxsize: int, connect_timeout: float) -> None:
        if not verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._origin = origin
        self._connect_timeout = connect_timeout
        options: dict[str, Any] = {
            "num_pools": 2, "maxsize": maxsize, "retries": False,
            "cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE", "ca_certs": ca_file,
            "cert_file": cert_file, "key_file": key_file, "server_hostname": tls_server_name,
            "socket_options": socket_options}
        self._manager: urllib3.PoolManager
        if proxy_url is None:
            self._manager = urllib3.PoolManager(**options)
        else:
            auth = urllib3.util.parse_url(proxy_url).auth
            self._manager = urllib3.ProxyManager(
                proxy_url, proxy_headers=urllib3.make_headers(proxy_basic_auth=auth) if auth
                else None, **options)

    def request(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes | None, timeout: float, deadline: float | None = None) -> Response:
        response = self._urlopen(method, target, headers, body, timeout, deadline,
                                 preload_content=True)
        return Response(response.status, _headers(response), response.data)

    def stream(self, method: str, target: str, headers: Mapping[str, str], timeout: float,
               deadline: float | None = None) -> Urllib3Stream:
        response = self._urlopen(method, target, headers, None, timeout, deadline,
                                 preload_content=False)
        connection = response.connection
        if isinstance(connection, urllib3.connection.HTTPConnection) and connection.sock:
            connection.sock.settimeout(timeout)  # the body's reads: no longer the deadline's
        return Urllib3Stream(response)

    def _urlopen(self, method: str, target: str, headers: Mapping[str, str],
                 body: bytes | None, timeout: float, deadline: float | None,
                 **kwargs: Any) -> urllib3.BaseHTTPResponse:
        total = None if deadline is None else time_left(deadline)
        try:
            return self._manager.urlopen(
                method, self._origin + target, body=body, headers=dict(headers),
                timeout=urllib3.Timeout(connect=self._connect_timeout, read=timeout,
                                        total=total),
                redirect=False, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(str(exc)) from exc

    def clear(self) -> None:
        self._manager.clear()

    def close(self) -> None:
        self._manager.clear()
