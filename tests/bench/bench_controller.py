"""Benchmark: the controller on the local control plane, measured against the floor.

    .venv/bin/python tests/bench/bench_controller.py [--count 1000] [--samples 100]

Starts etcd + kube-apiserver + kube-controller-manager, runs `ssa-controller run` as a separate
process, creates COUNT AppTasks at once and prints a table: time to converge, API requests per
AppTask by verb (from the audit log, against the floor of one apply and one status patch),
change-to-Deployment latency p50/p99 over SAMPLES single updates, writes during 5 idle resyncs,
and the controller's RSS. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import urllib3
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ssa_controller import crds  # noqa: E402
from ssa_controller.envtest import ControlPlane, die_with_parent, install, poll_until  # noqa: E402
from ssa_controller.kube import APPTASKS, DEPLOYMENTS, Kube  # noqa: E402

NAMESPACE = "bench"
CONTROLLER_AGENT = "ssa-controller"
NEW_IMAGE = "nginx:1.26"


def apptask(name: str, image: str = "nginx:1.25") -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"image": image, "replicas": 0, "env": [{"name": "N", "value": name}],
                     "ports": [{"name": "http", "containerPort": 8080}],
                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Controller:
    def __init__(self, plane: ControlPlane, workdir: Path, resync: float, workers: int) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.metrics_port = sock.getsockname()[1]
        config = {"namespaces": [NAMESPACE], "workers": workers,
                  "leaderElection": {"enabled": False},
                  "resync": {"period": resync, "jitter": 0},
                  "rateLimit": {"qps": 1000, "burst": 1000},
                  "server": {"bindAddress": "127.0.0.1", "metricsPort": self.metrics_port,
                             "healthPort": 0}, "logging": {"level": "warning"}}
        path = workdir / "controller.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = (workdir / "controller.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "ssa_controller", "run", "--config",
                                      str(path), "--kubeconfig", str(plane.kubeconfig)],
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent(os.getpid()))
        self.http = urllib3.PoolManager(retries=urllib3.Retry(connect=50, backoff_factor=0.05))

    def reconciles(self) -> float:
        text = self.http.request("GET", f"http://127.0.0.1:{self.metrics_port}/metrics").data.decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("controller_runtime_reconcile_total{"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def deployments_applied(kube: Kube, count: int) -> bool:
    return len(kube.list(DEPLOYMENTS.path(NAMESPACE))["items"]) == count


def all_ready(kube: Kube, count: int) -> bool:
    items = kube.list(APPTASKS.path(NAMESPACE))["items"]
    return len(items) == count and all(
        i.get("status", {}).get("observedGeneration") == 1
        and i["status"].get("phase") == "Ready" for i in items)


def latency_samples(kube: Kube, kubeconfig: Path, samples: int) -> list[float]:
    """Seconds from an AppTask update to the watch event showing it in its Deployment."""
    seen: dict[str, float] = {}
    ready = threading.Event()
    stream_kube = Kube.from_kubeconfig(str(kubeconfig), user_agent="bench-watch")
    rv = kube.list(DEPLOYMENTS.path(NAMESPACE), {"limit": 1})["metadata"]["resourceVersion"]

    def watch() -> None:
        ready.set()
        for event in stream_kube.watch(DEPLOYMENTS.path(NAMESPACE),
                                       {"resourceVersion": rv, "timeoutSeconds": 600}, timeout=630):
            obj = event["object"]
            if obj["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE:
                seen.setdefault(obj["metadata"]["name"], time.monotonic())
            if len(seen) >= samples:
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait()
    sent: dict[str, float] = {}
    for i in range(samples):
        name = f"bench-{i}"
        sent[name] = time.monotonic()
        kube.apply(APPTASKS.path(NAMESPACE, name), apptask(name, NEW_IMAGE),
                   field_manager="bench", force=True)
        poll_until(lambda: name in seen, timeout=30, interval=0.001, message=f"{name} updated")
    return [seen[k] - t for k, t in sent.items()]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--resync", type=float, default=2.0, help="resync period (s)")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, \
            ControlPlane(Path(tmp), controller_manager=True, assets=install(log=lambda _: None)) as plane:
        admin = Kube.from_kubeconfig(str(plane.kubeconfig), user_agent="bench")
        crds.install(admin)
        admin.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        controller = Controller(plane, Path(tmp), args.resync, args.workers)
        poll_until(lambda: controller.reconciles() >= 0, timeout=60, ignore=(urllib3.exceptions.HTTPError,))
        mark = plane.audit.mark()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: admin.apply(APPTASKS.path(NAMESPACE, f"bench-{i}"),
                                                apptask(f"bench-{i}"), field_manager="bench",
                                                force=True), range(args.count)))
        created = time.monotonic() - started
        poll_until(lambda: deployments_applied(admin, args.count), timeout=600, interval=0.2,
                   message="all Deployments applied")
        applied = time.monotonic() - started
        poll_until(lambda: all_ready(admin, args.count), timeout=600, interval=0.2,
                   message="all AppTasks Ready")
        took = time.monotonic() - started
        requests = plane.audit.select(mark, user_agent=CONTROLLER_AGENT)
        by_kind = collections.Counter(
            f"{e.verb} {e.resource}{'/' + e.subresource if e.subresource else ''}" for e in requests)
        rows.append(("AppTasks", str(args.count), f"created by the benchmark in {created:.1f}s"))
        rows.append(("all Deployments applied", f"{applied:.1f}s",
                     f"{args.count / applied:.0f} AppTasks/s"))
        rows.append(("time to converge", f"{took:.1f}s", "every AppTask Ready at generation 1 "
                     "(includes kube-controller-manager's work)"))
        rows.append(("requests per AppTask", f"{len(requests) / args.count:.2f}",
                     "floor: 2.00 (one apply, one status patch)"))
        for kind, n in sorted(by_kind.items()):
            rows.append((f"  {kind}", f"{n / args.count:.2f}", f"{n} in all"))

        idle_mark, idle_start = plane.audit.mark(), controller.reconciles()
        poll_until(lambda: controller.reconciles() >= idle_start + 5 * args.count,
                   timeout=300, interval=0.2, message="five idle resyncs")
        idle = plane.audit.select(idle_mark, user_agent=CONTROLLER_AGENT)
        idle_kinds = collections.Counter(f"{e.verb} {e.resource}" for e in idle)
        rows.append(("writes in 5 idle resyncs", str(sum(e.is_write for e in idle)),
                     f"{len(idle)} requests of any kind {dict(idle_kinds) or ''}; floor: 0"))

        latencies = latency_samples(admin, plane.kubeconfig, min(args.samples, args.count))
        rows.append(("change -> Deployment p50", f"{percentile(latencies, 50) * 1000:.0f} ms",
                     f"{len(latencies)} sequential updates"))
        rows.append(("change -> Deployment p99", f"{percentile(latencies, 99) * 1000:.0f} ms",
                     f"mean {statistics.mean(latencies) * 1000:.0f} ms"))
        rows.append(("controller RSS", f"{rss_kib(controller.proc.pid) / 1024:.0f} MiB",
                     f"with {args.count} AppTasks and Deployments cached"))
        controller.stop()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric'.ljust(width)}  {'value':>10}  notes")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>10}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
