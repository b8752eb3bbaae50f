"""What a pod on the network can cost the controller's health and metrics ports (issue 26.3,
issue 24.5), with the controller as a real process and its scrapes reviewed by the real API
server.

- 500 idle sockets held to each port (some with half a request sent): the process's threads do
  not grow, and a probe and a scrape with a valid token each answer within 2 s (before: a
  thread per connection, never timed out on the health port).
- 200 scrapes with distinct bad tokens within 2 s: each is answered at once (401, or 429 / 503
  once the review budget or the reviews under way are spent), the threads do not grow, the
  TokenReviews sent stay within the budget, and a valid scraper still gets its metrics within
  5 s (before: each review waited for the budget in its own thread, 200 threads for 40 s).
- With `server.metricsTokenAudiences`, only a token issued for that audience scrapes.
"""

from __future__ import annotations

import collections
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import CONTROLLER, process_usage, scoped
from metrics_scrape import SECURE, metrics_reader, scrape, service_account_subject, user_subject

from ssa_controller.client.kube import Kube
from ssa_controller.envtest import ControlPlane
from ssa_controller.serving.metrics_auth import REVIEW_BURST, REVIEW_QPS

THREAD_SLACK = 2
"""Threads the process may gain meanwhile (an Event being posted, a watch being replaced)."""
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname, UNVERIFIED.verify_mode = False, ssl.CERT_NONE


def quick_scrape(port: int, token: str) -> int:
    """The status of GET /metrics with `token`, over one TLS connection of a shared context
    (metrics_scrape.scrape builds a urllib3 pool, and so loads the system's CAs, each time: a
    tenth of a second, too slow to send 200 scrapes in 2 s)."""
    with UNVERIFIED.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as s:
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                  "\r\n\r\n".encode())
        head = s.recv(12)
        while s.recv(65536):
            pass
    return int(head[9:12])


@pytest.fixture
def held_sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


class ThreadPeak:
    """The most threads a process had while the block ran (sampled every 50 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, process_usage(self.pid).threads)
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_idle_sockets_hold_no_thread_and_probes_and_scrapes_still_answer(
        admin: Kube, controller, namespace: str, cluster: ControlPlane,
        held_sockets: list[socket.socket]) -> None:
    token = cluster.token("alice")
    with metrics_reader(admin, user_subject("alice")):
        process = controller({**scoped(namespace), **SECURE})
        assert scrape(process.metrics_port, token)[0] == 200
        threads = process_usage(process.proc.pid).threads
        with ThreadPeak(process.proc.pid) as threads_meanwhile:
            for port in (process.health_port, process.metrics_port):
                for i in range(500):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    held_sockets.append(sock)
                    if i % 5 == 0:
                        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
                                     if port == process.health_port else b"\x16\x03\x01\x02")
            started = time.monotonic()
            assert process.get(process.health_port, "/readyz") == (200, "ok")
            probe = time.monotonic() - started
            started = time.monotonic()
            status, text = scrape(process.metrics_port, token)
            scraped = time.monotonic() - started
            assert status == 200 and "controller_runtime_reconcile_total" in text
        print(f"1,000 sockets held: probe {probe:.2f}s, scrape {scraped:.2f}s, threads "
              f"{threads} before, at most {threads_meanwhile.peak} meanwhile")
        assert probe < 2.0 and scraped < 2.0
        assert threads_meanwhile.peak <= threads + THREAD_SLACK, (threads, threads_meanwhile.peak)


def test_a_flood_of_bad_tokens_costs_bounded_threads_and_reviews(
        admin: Kube, controller, namespace: str, cluster: ControlPlane) -> None:
    token = cluster.token("alice")
    with metrics_reader(admin, user_subject("alice")):
        process = controller({**scoped(namespace), **SECURE})
        assert scrape(process.metrics_port, token)[0] == 200  # its decision is cached
        threads = process_usage(process.proc.pid).threads
        mark, started = cluster.audit.mark(), time.monotonic()
        answers: list[tuple[int, float]] = []

        def flood(client: int) -> None:
            for i in range(25):
                sent = time.monotonic()
                status = quick_scrape(process.metrics_port, f"bad-{client}-{i}")
                answers.append((status, time.monotonic() - sent))

        with ThreadPeak(process.proc.pid) as threads_meanwhile:
            clients = [threading.Thread(target=flood, args=(c,)) for c in range(8)]
            for client in clients:
                client.start()
            for client in clients:
                client.join(60)
        flooded = time.monotonic() - started
        assert flooded < 2.0, flooded
        assert len(answers) == 200
        assert {status for status, _ in answers} <= {401, 429, 503}, answers
        assert max(seconds for _, seconds in answers) < 1.0
        assert threads_meanwhile.peak <= threads + THREAD_SLACK, (threads, threads_meanwhile.peak)

        valid = time.monotonic()
        assert scrape(process.metrics_port, token)[0] == 200
        valid = time.monotonic() - valid
        reviews = [e for e in cluster.audit.select(mark, user=CONTROLLER, verb="create")
                   if e.resource == "tokenreviews"]
        budget = REVIEW_BURST + REVIEW_QPS * (time.monotonic() - started)
        statuses = dict(collections.Counter(status for status, _ in answers))
        slowest = max(seconds for _, seconds in answers)
        print(f"200 bad tokens in {flooded:.2f}s: {statuses}, slowest answer {slowest:.2f}s; "
              f"threads {threads} before, at most {threads_meanwhile.peak}; {len(reviews)} "
              f"TokenReviews (budget {budget:.0f}); the reader's scrape {valid:.2f}s")
        assert valid < 5.0
        assert 0 < len(reviews) <= budget, (len(reviews), budget)


def test_with_audiences_only_a_token_for_one_of_them_scrapes(
        admin: Kube, controller, namespace: str, cluster: ControlPlane) -> None:
    admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"metadata": {"name": "prometheus"}})

    def token(*audiences: str) -> str:
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 600, "audiences": list(audiences)}}
        answer = admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/prometheus/token",
                              request)
        return str(answer["status"]["token"])

    for_metrics, for_the_api = token("ssa-controller-metrics"), token()
    with metrics_reader(admin, service_account_subject(namespace, "prometheus")), \
            metrics_reader(admin, user_subject("alice")):
        process = controller({**scoped(namespace), "server": {
            "secureMetrics": True, "metricsTokenAudiences": ["ssa-controller-metrics"]}})
        assert scrape(process.metrics_port, for_metrics)[0] == 200
        assert scrape(process.metrics_port, for_the_api) == (401, "Unauthorized\n")
        assert scrape(process.metrics_port, cluster.token("alice")) == (401, "Unauthorized\n")
