"""Serves a metrics registry on /metrics in the Prometheus text format: over plain HTTP, or, as
controller-runtime's secure metrics do and `serve_configured` does by default, over HTTPS with
each scrape authenticated and authorized by the API server (metrics_auth)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ..client.kube import Kube
from ..settings.config import ServerConfig
from . import servingcert
from .httpserver import BackgroundHttpServer, QuietHandler, listening
from .metrics_auth import KubeReviews, MetricsAuthorizer

log = logging.getLogger(__name__)


def serve(registry: CollectorRegistry, bind_address: str, port: int, *,
          tls: servingcert.ContextSource | None = None,
          authorizer: MetricsAuthorizer | None = None) -> MetricsServer | None:
    """Serve `registry` on /metrics at bind_address:port in daemon threads; port 0 disables
    (None). With `tls` over HTTPS; with `authorizer` only to the requests it allows. An address
    it cannot listen on is a ListenError naming server.metricsPort."""
    if port == 0:
        return None
    server = listening("server.metricsPort", bind_address, port, lambda: MetricsServer(
        registry, bind_address, port, tls, authorizer))
    log.info("serving /metrics on %s:%d (%s)", bind_address, server.port,
             "HTTPS, scrapes authorized by the API server" if authorizer else
             "HTTPS" if tls else "plain HTTP")
    return server


def serve_configured(registry: CollectorRegistry, server: ServerConfig, kube: Kube
                     ) -> MetricsServer | None:
    """Serve /metrics as `server` says: with secureMetrics over HTTPS, each scrape checked
    by a TokenReview and a SubjectAccessReview sent with `kube`; else plain HTTP."""
    if not server.secure_metrics or server.metrics_port == 0:
        return serve(registry, server.metrics_listen, server.metrics_port)
    return serve(registry, server.metrics_listen, server.metrics_port,
                 tls=servingcert.context_source(server.metrics_cert_dir),
                 authorizer=MetricsAuthorizer(KubeReviews(kube, server.metrics_token_audiences)))


class MetricsServer:
    """A started HTTP(S) server answering GET /metrics from one registry."""

    def __init__(self, registry: CollectorRegistry, bind_address: str, port: int,
                 tls: servingcert.ContextSource | None = None,
                 authorizer: MetricsAuthorizer | None = None) -> None:
        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                path = self.path.split("?", 1)[0]
                if path != "/metrics":
                    self.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
                    return
                if authorizer is not None:
                    decision = authorizer.check(self.headers.get("Authorization"), "get", path)
                    if not decision.allowed:
                        self.reply(decision.status, f"{decision.message}\n".encode(),
                                   "text/plain; charset=utf-8")
                        return
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self.reply(200, encoder(registry), content_type)

        self._server = BackgroundHttpServer(bind_address, port, Handler, "metrics-server", tls)
        self._server.start()

    @property
    def port(self) -> int:
        return self._server.port

    def stop(self) -> None:
        self._server.stop()
