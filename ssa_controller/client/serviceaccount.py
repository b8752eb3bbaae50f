"""In-cluster credentials: the pod's service account, read as the kubelet mounts it.

What client-go's rest.InClusterConfig reads: the API server from $KUBERNETES_SERVICE_HOST and
$KUBERNETES_SERVICE_PORT, the CA bundle `ca.crt` and the bearer token `token` from the
service-account directory. The token is read again at most once a minute, as client-go's
cached file token source does, because a projected token rotates.

Read without the `kubernetes` package: importing it loads every generated model, about 30 MB of
memory and 0.4 CPU-seconds that a pod has no use for (kubeconfig files still go through it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .http1 import authority

HOST_ENV = "KUBERNETES_SERVICE_HOST"
PORT_ENV = "KUBERNETES_SERVICE_PORT"
TOKEN_REREAD = 60.0
"""Seconds a token read from the file is used before the file is read again."""


class ServiceAccountError(Exception):
    """The pod's environment or service-account files do not make credentials."""


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ServiceAccountError(f"{what} {path}: {exc.strerror or exc}") from exc
    if not text:
        raise ServiceAccountError(f"{what} {path} is empty")
    return text


class Token:
    """The Authorization header for the token file, read again once `period` seconds passed.
    A failed re-read keeps the token last read (the kubelet swaps the file atomically, so
    this is a passing fault) and tries again at the next request."""

    def __init__(self, path: Path, period: float = TOKEN_REREAD,
                 clock: Callable[[], float] | None = None) -> None:
        self._path, self._period, self._clock = path, period, clock or time.monotonic
        self._lock = threading.Lock()
        self._token = _read(path, "service-account token")
        self._read_at = self._clock()

    def __call__(self) -> str:
        with self._lock:
            now = self._clock()
            if now - self._read_at >= self._period:
                try:
                    self._token = _read(self._path, "service-account token")
                    self._read_at = now
                except ServiceAccountError:
                    pass
            return f"Bearer {self._token}"


@dataclass(frozen=True)
class InCluster:
    """Where the API server is and how to trust it and authenticate to it from a pod."""

    server: str
    ca_file: str
    authorization: Token


def load(directory: Path, environ: Mapping[str, str]) -> InCluster:
    """The credentials of the pod's service account; ServiceAccountError naming what is
    missing."""
    host, port = environ.get(HOST_ENV), environ.get(PORT_ENV)
    if not host or not port:
        raise ServiceAccountError(f"${HOST_ENV} and ${PORT_ENV} must both be set")
    authorization = Token(directory / "token")
    ca_file = directory / "ca.crt"
    _read(ca_file, "service-account CA bundle")
    return InCluster(f"https://{authority(host, port)}", str(ca_file), authorization)
