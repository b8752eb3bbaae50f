"""What the process serves: Prometheus metrics (`metrics`, served by `metricsserver`, each scrape
authorized by `metrics_auth`, over TLS from `servingcert`), the health probes (`health`), and
the small bounded HTTP(S) server both share (`httpserver`).

Imports `client`, `runtime`, `apptask` and `settings`; never the modules above it.
"""
