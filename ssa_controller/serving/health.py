"""Liveness and readiness probes: GET /healthz and /readyz, like controller-runtime's healthz.

Each endpoint aggregates named checks (callables returning True when healthy): 200 "ok"
when all pass, else 500 listing every check as "[+]name ok" / "[-]name failed: reason
withheld". `?verbose` lists the checks on success too, `?exclude=name` skips one, and
/healthz/<name> runs a single check. Served by serving.httpserver, as /metrics is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from .httpserver import BackgroundHttpServer, QuietHandler, listening

log = logging.getLogger(__name__)

Check = Callable[[], bool]


def _passes(name: str, check: Check) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a crashing check is a failing check
        log.exception("health check %s raised", name)
        return False


def aggregate(checks: Mapping[str, Check], excluded: set[str],
              verbose: bool) -> tuple[int, str]:
    """controller-runtime's aggregated healthz answer: (status code, text body)."""
    passed = {name: name in excluded or _passes(name, check)
              for name, check in checks.items()} or {"ping": True}
    failed = not all(passed.values())
    if not failed and not verbose:
        return 200, "ok"
    lines = []
    for name in sorted(passed):
        if name in excluded:
            lines.append(f"[+]{name} excluded: ok")
        elif passed[name]:
            lines.append(f"[+]{name} ok")
        else:
            lines.append(f"[-]{name} failed: reason withheld")
    unknown = sorted(excluded - set(checks))
    if unknown:
        lines.append("warn: some health checks cannot be excluded: no matches for "
                     + ", ".join(f'"{name}"' for name in unknown))
    lines.append("healthz check failed" if failed else "healthz check passed")
    return (500 if failed else 200), "\n".join(lines) + "\n"


def single(checks: Mapping[str, Check], name: str) -> tuple[int, str]:
    """The answer for /healthz/<name>: one check, 404 if unknown."""
    if name not in checks:
        return 404, "404 page not found\n"
    if _passes(name, checks[name]):
        return 200, "ok"
    return 500, f"internal server error: check {name} failed\n"


def _handler(endpoints: Mapping[str, Mapping[str, Check]]) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            endpoint, _, name = url.path.strip("/").partition("/")
            checks = endpoints.get(endpoint)
            if checks is None:
                status, body = 404, "404 page not found\n"
            elif name:
                status, body = single(checks, name)
            else:
                status, body = aggregate(checks, set(query.get("exclude", [])),
                                         "verbose" in query)
            self.reply(status, body.encode(), "text/plain; charset=utf-8")

    return Handler


class HealthServer:
    """Serves /healthz (liveness) and /readyz (readiness) on `port`; port 0 disables it. An
    address it cannot listen on is a ListenError naming server.healthPort."""

    def __init__(self, bind_address: str, port: int, *, healthz: Mapping[str, Check],
                 readyz: Mapping[str, Check]) -> None:
        self.bind_address = bind_address
        self.port = port
        self._endpoints = {"healthz": dict(healthz), "readyz": dict(readyz)}
        self._server: BackgroundHttpServer | None = None

    @property
    def enabled(self) -> bool:
        return self.port != 0

    def start(self) -> None:
        if not self.enabled or self._server is not None:
            return
        self._server = listening("server.healthPort", self.bind_address, self.port,
                                 lambda: BackgroundHttpServer(self.bind_address, self.port,
                                                              _handler(self._endpoints),
                                                              "health-server"))
        self._server.start()
        log.info("serving /healthz and /readyz on %s:%d", self.bind_address, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
