"""Benchmark: the CPU one API request costs the client, by HTTP stack.

    .venv/bin/python tests/bench/request_cost.py [--requests 2000]

One local control plane (etcd, kube-apiserver v1.20.2); the same keep-alive GET of one
ConfigMap, one request at a time, through client.kube.Kube (client.http1 below
it), through urllib3 alone (what Kube used before), through http.client alone, and over a bare
TLS socket (the request written and the answer read by hand); each answer decoded as JSON.
Prints the calling thread's CPU and the wall time per request: how much of the controller's
per-request cost is its HTTP stack. Not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssa_controller.client.kube import Kube  # noqa: E402
from ssa_controller.envtest.assets import install  # noqa: E402
from ssa_controller.envtest.controlplane import ControlPlane  # noqa: E402

PATH = "/api/v1/namespaces/default/configmaps/request-cost"


def measure(name: str, request: Callable[[], object], count: int) -> None:
    for _ in range(50):  # connections open, caches warm
        request()
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(count):
        request()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    print(f"{name:12s} {cpu / count * 1e6:8.0f} {wall / count * 1e6:8.0f}", flush=True)


def bare_tls(host: str, port: int, context: ssl.SSLContext,
             headers: dict[str, str]) -> Callable[[], object]:
    """A GET over one TLS socket: request line and headers written, status line, headers and a
    Content-Length body read (the API server answers a GET so)."""
    sock = context.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
    reader = sock.makefile("rb")
    lines = [f"GET {PATH} HTTP/1.1", f"Host: {host}:{port}",
             *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    def get() -> object:
        sock.sendall(request)
        reader.readline()
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        return json.loads(reader.read(length))
    return get


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            ControlPlane(Path(tmp), assets=install(log=lambda _: None)) as plane:
        kube = Kube.from_kubeconfig(str(plane.kubeconfig), user_agent="request-cost")
        kube.create("/api/v1/namespaces/default/configmaps",
                    {"metadata": {"name": "request-cost"}, "data": {"key": "value"}})
        host, port = plane.url.split("//", 1)[1].rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(plane.ca_file))
        headers = {"Authorization": f"Bearer {plane.admin_token}",
                   "Accept": "application/json", "User-Agent": "request-cost"}
        connection = http.client.HTTPSConnection(host, int(port), context=context)
        pool = urllib3.HTTPSConnectionPool(host, int(port), ca_certs=str(plane.ca_file),
                                           cert_reqs="CERT_REQUIRED", retries=False)

        def pooled() -> object:
            return json.loads(pool.urlopen("GET", PATH, headers=headers).data)

        def plain() -> object:
            connection.request("GET", PATH, headers=headers)
            return json.loads(connection.getresponse().read())

        print(f"{'client':12s} {'cpu_us':>8s} {'wall_us':>8s}")
        measure("Kube", lambda: kube.get(PATH), args.requests)
        measure("urllib3", pooled, args.requests)
        measure("http.client", plain, args.requests)
        measure("bare TLS", bare_tls(host, int(port), context, headers), args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
