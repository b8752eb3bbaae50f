"""Requests to the API server through an HTTP(S) proxy, over urllib3 (only this module imports
it: without a proxy the controller never loads it).

urllib3 decides how a proxy is spoken to: absolute-form requests to an http proxy, CONNECT
tunnels for TLS through it, Proxy-Authorization from credentials in the proxy URL
(http://user:password@proxy:3128). Its answers are handed back as http1's: a `Response` for a
whole answer, a `ProxiedStream` with `http1.Stream`'s interface for a watch, and every urllib3
error as `http1.TransportError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import urllib3

from . import http1


def _headers(response: urllib3.BaseHTTPResponse) -> dict[str, str]:
    """As http1's: names in lower case, the values of a repeated header joined by ", "."""
    return {name.lower(): response.headers[name] for name in response.headers}


class ProxiedStream:
    """A streamed urllib3 answer with http1.Stream's interface."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = _headers(response)

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._response.stream(http1.READ_SIZE)
        except urllib3.exceptions.HTTPError as exc:
            raise http1.TransportError(str(exc)) from exc
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


class ProxyPool:
    """http1.Pool's interface (request, stream, clear, close) through a proxy to `origin`
    (scheme://host:port of the API server)."""

    def __init__(self, origin: str, proxy_url: str, *, verify: bool, ca_file: str | None,
                 cert_file: str | None, key_file: str | None, tls_server_name: str | None,
                 socket_options: list[http1.SocketOption], maxsize: int,
                 connect_timeout: float) -> None:
        if not verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        auth = urllib3.util.parse_url(proxy_url).auth
        self._origin = origin
        self._connect_timeout = connect_timeout
        self._manager = urllib3.ProxyManager(
            proxy_url, proxy_headers=urllib3.make_headers(proxy_basic_auth=auth) if auth else None,
            num_pools=2, maxsize=maxsize, retries=False,
            cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE", ca_certs=ca_file,
            cert_file=cert_file, key_file=key_file, server_hostname=tls_server_name,
            socket_options=socket_options)

    def request(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes | None, timeout: float, deadline: float | None = None
                ) -> http1.Response:
        response = self._urlopen(method, target, headers, body, timeout, deadline,
                                 preload_content=True)
        return http1.Response(response.status, _headers(response), response.data)

    def stream(self, method: str, target: str, headers: Mapping[str, str],
               timeout: float) -> ProxiedStream:
        return ProxiedStream(self._urlopen(method, target, headers, None, timeout, None,
                                           preload_content=False))

    def _urlopen(self, method: str, target: str, headers: Mapping[str, str],
                 body: bytes | None, timeout: float, deadline: float | None,
                 **kwargs: Any) -> urllib3.BaseHTTPResponse:
        total = None if deadline is None else http1.time_left(deadline)
        try:
            return self._manager.urlopen(
                method, self._origin + target, body=body, headers=dict(headers),
                timeout=urllib3.Timeout(connect=self._connect_timeout, read=timeout,
                                        total=total),
                redirect=False, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise http1.TransportError(str(exc)) from exc

    def clear(self) -> None:
        self._manager.clear()

    def close(self) -> None:
        self._manager.clear()
