"""A minimal JSON-over-HTTPS client for the envtest tools: probes, the pod simulator, fixtures.

Deliberately independent of `ssa_controller.kube`: the test harness must not depend on the code it
tests. Plain urllib3 and json, bearer-token auth, verified TLS when a CA file is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class RestError(Exception):
    """The API server answered with a non-2xx status."""

    def __init__(self, method: str, path: str, status: int, body: Obj | str) -> None:
        message = body.get("message", "") if isinstance(body, dict) else body[:300]
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.body = body


def _decode(data: bytes) -> Obj | str:
    text = data.decode("utf-8", "replace")
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, dict) else {"value": decoded}


class WatchStream:
    """An open watch: iterate for {"type", "object"} events; close() works from another thread."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[Obj]:
        for line in self._response:
            if line.strip():
                yield json.loads(line)

    def close(self) -> None:
        self._response.shutdown()
        self._response.release_conn()


class RestClient:
    """Bearer-token JSON client for one API server."""

    def __init__(
        self,
        url: str,
        token: str,
        ca_file: str | None = None,
        *,
        user_agent: str = "ssa-envtest",
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": user_agent,
            "Accept": "application/json",
        }
        self._timeout = timeout
        tls: dict[str, Any] = (
            {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_file}
            if ca_file
            else {"cert_reqs": "CERT_NONE"}
        )
        self._pool = urllib3.PoolManager(maxsize=4, retries=False, **tls)

    def request(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Obj:
        """Send one request; return the decoded JSON body or raise RestError."""
        headers = dict(self._headers)
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body).encode()
        response = self._pool.request(
            method,
            self._url(path, params),
            body=payload,
            headers=headers,
            timeout=urllib3.Timeout(connect=5.0, read=timeout or self._timeout),
        )
        decoded = _decode(response.data)
        if response.status >= 300:
            raise RestError(method, path, response.status, decoded)
        return decoded if isinstance(decoded, dict) else {"value": decoded}

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("GET", path, params=params)

    def create(self, path: str, body: Obj, params: Mapping[str, Any] | None = None) -> Obj:
        return self.request("POST", path, body, params=params)

    def patch(
        self,
        path: str,
        body: Obj,
        content_type: str = MERGE_PATCH,
        params: Mapping[str, Any] | None = None,
    ) -> Obj:
        return self.request("PATCH", path, body, params=params, content_type=content_type)

    def delete(
        self, path: str, body: Obj | None = None, params: Mapping[str, Any] | None = None
    ) -> Obj:
        return self.request("DELETE", path, body, params=params)

    def watch(
        self, path: str, params: Mapping[str, Any] | None = None, timeout: int = 60
    ) -> WatchStream:
        """Open a watch the server ends after `timeout` seconds (and a client read timeout)."""
        query = {**(params or {}), "watch": "true", "timeoutSeconds": str(timeout)}
        response = self._pool.request(
            "GET",
            self._url(path, query),
            headers=self._headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout + 15.0),
        )
        if response.status >= 300:
            body = _decode(response.data)
            response.release_conn()
            raise RestError("WATCH", path, response.status, body)
        return WatchStream(response)

    def close(self) -> None:
        self._pool.clear()

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        return f"{self.url}{path}" + (f"?{urlencode(params)}" if params else "")
