"""Where the controller's memory per cached AppTask + Deployment pair goes.

    .venv/bin/python tests/bench/memory_profile.py [--count 1000 --count 5000] [--no-go]

One local control plane (etcd, kube-apiserver v1.20.2, kube-controller-manager, as
bench_compare.py runs it). Per COUNT: COUNT AppTasks shaped as the benchmark's (replicas 0) in a
namespace of their own, then, each in a fresh child process running the real Controller (its
watches, 4 workers and the Event recorder, in-process, on the admin's kubeconfig, with the
environment manifests/deployment.yaml sets, MALLOC_ARENA_MAX=2, as the benchmark runs it):
- first: the controller starts over the AppTasks alone, creates every Deployment, posts its
  Events, writes every status, until every AppTask is Ready and the queue is idle (traced);
- cold (twice: untraced for RSS, traced for the attribution): it starts over the converged
  pairs, syncs both caches and reconciles every AppTask once (nothing to write).
Each child measures from just before its watches start (after imports and set-up) to the end:
RSS growth (/proc), tracemalloc's growth by allocation site, and, by walking the controller's
structures, the bytes each holds (a string or container reached twice counted once, where first
reached; strings held by two or more places under "shared strings"). "rest" is RSS growth minus
the traced growth: the interpreter's and the allocator's overhead and fragmentation. Per pair is
growth / COUNT; "slope" the growth from the smallest to the largest COUNT per pair added, which
leaves out what any start costs (threads, connections, lazily imported code). The first start's
RSS is that of a traced run less tracemalloc's own memory.
Then (unless --no-go or it is not built) the Go yardstick (tests/bench/goctl) over the same
pairs, with GODEBUG=gctrace=1: its RSS and its live heap after its last garbage collection.
Not a test; prints tables.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import goctl_build  # noqa: E402  (beside this file)
from bench_compare import manifest_env, proc_cpu, proc_mem  # noqa: E402

from ssa_controller import crds  # noqa: E402
from ssa_controller.client.kube import Kube  # noqa: E402
from ssa_controller.client.resources import APPTASKS  # noqa: E402
from ssa_controller.controller import Controller  # noqa: E402
from ssa_controller.envtest import ControlPlane, install, poll_until  # noqa: E402
from ssa_controller.reconciler import Result  # noqa: E402
from ssa_controller.runner import configure_client  # noqa: E402
from ssa_controller.runtime import fieldset  # noqa: E402
from ssa_controller.runtime.events import EventRecorder  # noqa: E402
from ssa_controller.runtime.objectkey import ObjectKey  # noqa: E402
from ssa_controller.runtime.refusals import CredentialRefusals  # noqa: E402
from ssa_controller.serving.metrics import Metrics  # noqa: E402
from ssa_controller.settings.config import parse_config  # noqa: E402

WORKERS = 4
TIMEOUT = 1800.0
MB = 1024 * 1024


def apptask(ns: str, name: str) -> dict[str, Any]:
    """An AppTask as bench_compare.py creates them."""
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"image": "nginx:1.25", "replicas": 0, "env": [{"name": "N", "value": name}],
                     "ports": [{"name": "http", "containerPort": 8080}],
                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}}


def rss(pid: int | None = None) -> float:
    """The resident set of process `pid` (this one when None), in bytes."""
    return proc_mem(os.getpid() if pid is None else pid)[0] * MB


# -- walking the controller's structures ------------------------------------------------------

def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        yield from obj.keys()
        yield from obj.values()
    elif isinstance(obj, (list, tuple, set, frozenset)):
        yield from obj
    elif hasattr(obj, "__slots__") and not isinstance(obj, type):
        yield from (getattr(obj, s) for s in obj.__slots__ if hasattr(obj, s))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield obj.__dict__


def _reachable(root: Any) -> Iterator[Any]:
    """Every object reachable from `root` through containers and instances (each once)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        stack.extend(_children(obj))


class Walk:
    """Bytes held by named structures: each object counted once, in the first structure that
    reaches it; a string that two or more containers refer to under 'shared strings'."""

    def __init__(self, parts: dict[str, Any]) -> None:
        refs: Counter[int] = Counter()
        for root in parts.values():
            for obj in _reachable(root):
                if not isinstance(obj, str):
                    refs.update(id(c) for c in _children(obj) if isinstance(c, str))
        counted: set[int] = set()
        self.bytes: dict[str, int] = {}
        shared = 0
        for name, root in parts.items():
            total = 0
            for obj in _reachable(root):
                if id(obj) in counted or callable(obj):
                    continue
                counted.add(id(obj))
                if isinstance(obj, str) and refs[id(obj)] > 1:
                    shared += sys.getsizeof(obj)
                else:
                    total += sys.getsizeof(obj)
            self.bytes[name] = total
        self.bytes["shared strings"] = shared


def structures(controller: Controller, events: EventRecorder) -> dict[str, Any]:
    """The controller's per-object state, by structure (see Walk)."""
    apptasks, deployments = controller.apptasks, controller.deployments
    memories = controller.reconciler.memories._memories
    dep_objs = {k: c.obj for k, c in deployments._watched.items()}
    parts: dict[str, Any] = {
        "AppTask cache: metadata": [c.obj.get("metadata") for c in apptasks._watched.values()],
        "AppTask cache: spec": [c.obj.get("spec") for c in apptasks._watched.values()],
        "AppTask cache: status": [c.obj.get("status") for c in apptasks._watched.values()],
        "AppTask cache: records, keys, dict": apptasks._watched,
        "Deployment cache: metadata": [o.get("metadata") for o in dep_objs.values()],
        "Deployment cache: spec": [o.get("spec") for o in dep_objs.values()],
        "Deployment cache: status": [o.get("status") for o in dep_objs.values()],
        "Deployment cache: owners summary": [c.owners for c in deployments._watched.values()],
        "Deployment cache: records, keys, dict": deployments._watched,
        "write answers not yet watched": (apptasks._written, deployments._written),
        "memories: in_sync comparisons": [m.in_sync for m in memories.values()],
        "memories: status bases": [m.status_basis for m in memories.values()],
        "memories: records, fights, dict": memories,
        "work queue and backoff": {k: v for k, v in vars(controller.queue).items()
                                   if isinstance(v, (dict, set, list, deque))},
        "Event recorder (per-object buckets, series)": (events._correlator._buckets,
                                                        events._correlator._series,
                                                        events._queue),
        "fieldset shapes": fieldset._shapes,
    }
    return parts


# -- the child: one controller run, measured --------------------------------------------------

class Counting(Controller):
    """The real Controller, counting its reconciles."""

    reconciles = 0

    def process(self, key: ObjectKey) -> Result:
        result = super().process(key)
        self.reconciles += 1
        return result


def converged(controller: Controller, count: int) -> bool:
    """Every AppTask's status current and Ready, nothing queued or delayed."""
    objs = [controller.apptasks.get(k) for k in controller.apptasks.keys()]
    if len(objs) < count:
        return False
    for obj in objs:
        st = (obj or {}).get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in st.get("conditions") or ())
        if st.get("observedGeneration") != (obj or {})["metadata"].get("generation") or not ready:
            return False
    return len(controller.queue) == 0 and controller.queue.delayed() == 0


def child(args: argparse.Namespace) -> int:
    config = parse_config({"namespaces": [args.namespace], "workers": WORKERS,
                           "leaderElection": {"enabled": False},
                           "rateLimit": {"qps": 1000, "burst": 1000}})
    kube = Kube.from_kubeconfig(args.kubeconfig, user_agent="memprof")
    metrics = Metrics()
    configure_client(kube, config, metrics, CredentialRefusals(config.timeouts.request))
    events = EventRecorder(kube, controller="example.com/ssa-controller", instance="memprof",
                           qps=config.events.qps, burst=config.events.burst, metrics=metrics)
    controller = Counting(config, kube, events, metrics)
    stop = threading.Event()
    events.start()
    gc.collect()
    if args.trace:
        tracemalloc.start()
    before = tracemalloc.take_snapshot() if args.trace else None
    rss0 = rss()
    controller.start_watches(stop)
    assert controller.wait_synced(TIMEOUT)
    controller.start_workers()
    poll_until(lambda: controller.reconciles >= args.count and converged(controller, args.count),
               timeout=TIMEOUT, interval=0.5, message="converged")
    time.sleep(1.0)
    gc.collect()
    out: dict[str, Any] = {"rss": rss() - rss0, "rss_total": rss()}
    if before is not None:
        after = tracemalloc.take_snapshot()
        out["rss"] -= tracemalloc.get_tracemalloc_memory()  # its own tables are no growth
        tracemalloc.stop()
        stats = after.compare_to(before, "lineno")
        out["traced"] = sum(s.size_diff for s in stats)
        out["sites"] = [(f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                         s.size_diff) for s in stats[:14]]
        out["structures"] = Walk(structures(controller, events)).bytes
        out["sample"] = controller.deployments.get(next(iter(controller.deployments.keys())))
    stop.set()
    controller.stop_watches()
    controller.stop_workers()
    events.stop()
    print(json.dumps(out), flush=True)
    os._exit(0)  # the watch threads are daemons; nothing else to clean up


def _short(filename: str) -> str:
    for marker in ("ssa_controller/", "python3."):
        if marker in filename:
            return filename[filename.index(marker):]
    return filename


# -- the parent -------------------------------------------------------------------------------

def run_child(kubeconfig: Path, ns: str, count: int, trace: bool) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", "--kubeconfig", str(kubeconfig),
            "--namespace", ns, "--count", str(count)] + (["--trace"] if trace else [])
    env = {**os.environ, **manifest_env(ROOT)}  # as the Deployment runs it (MALLOC_ARENA_MAX)
    done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=TIMEOUT,
                          env=env)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def go_run(binary: Path, kubeconfig: Path, ns: str) -> tuple[float, float]:
    """(RSS MB, live heap MB after its last collection) of the Go yardstick once it has
    reconciled the pairs of `ns` and gone quiet."""
    argv = [str(binary), "--kubeconfig", str(kubeconfig), "--namespace", ns, "--workers",
            str(WORKERS)]
    env = {**os.environ, "GODEBUG": "gctrace=1"}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            quiet, last = time.monotonic(), proc_cpu(proc.pid)
            while time.monotonic() - quiet < 5.0:
                time.sleep(0.5)
                now = proc_cpu(proc.pid)
                if now - last > 0.02:
                    quiet = time.monotonic()
                last = now
            resident = rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
        log.seek(0)
        heaps = re.findall(r"\d+->\d+->(\d+) MB", log.read())
    return resident / MB, float(heaps[-1]) if heaps else float("nan")


def create(admin: Kube, ns: str, count: int) -> None:
    admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    names = [f"at-{i}" for i in range(count)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: admin.apply(APPTASKS.path(ns, n), apptask(ns, n),
                                            field_manager="bench", force=True), names))


def kb(value: float) -> str:
    return f"{value / 1024:7.2f}"


def report(counts: list[int], runs: dict[int, dict[str, dict[str, Any]]],
           go: dict[int, tuple[float, float]]) -> None:
    largest = runs[counts[-1]]["cold-trace"]
    print("\nKB per pair after a full sync (cold start over converged pairs), by structure:")
    names = list(largest["structures"])
    print(f"{'':48s}" + "".join(f"{f'N={n}':>9s}" for n in counts))
    for name in names:
        print(f"{name:48s}" + "".join(
            kb(runs[n]["cold-trace"]["structures"][name] / n).rjust(9) for n in counts))
    rows: dict[str, Callable[[int], float]] = {
        "walked, total": lambda n: sum(runs[n]["cold-trace"]["structures"].values()),
        "traced growth (tracemalloc)": lambda n: runs[n]["cold-trace"]["traced"],
        "RSS growth, untraced run": lambda n: runs[n]["cold"]["rss"]}
    for label, value in rows.items():
        print(f"{label:48s}" + "".join(kb(value(n) / n).rjust(9) for n in counts))
    print(f"{'rest: RSS growth minus traced growth':48s}" + "".join(
        kb((runs[n]["cold"]["rss"] - runs[n]["cold-trace"]["traced"]) / n).rjust(9)
        for n in counts))
    print("\nMB per 1,000 pairs (growth / N; slope: from the smallest to the largest N):")
    for label, mode, key in (("first start: RSS (*)", "first", "rss"),
                             ("first start: traced", "first", "traced"),
                             ("cold start: RSS", "cold", "rss"),
                             ("cold start: traced", "cold-trace", "traced")):
        cells = [f"{runs[n][mode][key] / n * 1000 / MB:8.2f}" for n in counts]
        if len(counts) > 1:
            lo, hi = counts[0], counts[-1]
            slope = (runs[hi][mode][key] - runs[lo][mode][key]) / (hi - lo) * 1000 / MB
            cells.append(f"  slope {slope:6.2f}")
        print(f"  {label:24s}" + "".join(cells))
    print("  (*) in a traced run, less tracemalloc's own memory")
    if go:
        cells = [f"RSS {go[n][0]:7.1f} MB, live heap {go[n][1]:6.1f} MB at N={n}"
                 for n in counts if n in go]
        print("  go yardstick: " + "; ".join(cells))
        if len(go) > 1:
            lo, hi = min(go), max(go)
            print(f"  go slope per 1,000: RSS {(go[hi][0] - go[lo][0]) / (hi - lo) * 1000:.2f}"
                  f" MB, live heap {(go[hi][1] - go[lo][1]) / (hi - lo) * 1000:.2f} MB")
    print("  controller RSS after the cold sync: " + ", ".join(
        f"{runs[n]['cold']['rss_total'] / MB:.1f} MB at N={n}" for n in counts))
    print(f"\nAllocation sites of the traced growth, N={counts[-1]}, cold (KB per pair):")
    for site, size in largest["sites"]:
        print(f"  {kb(size / counts[-1])}  {site}")
    print(f"\nAllocation sites, N={counts[-1]}, first start (KB per pair):")
    for site, size in runs[counts[-1]]["first"]["sites"]:
        print(f"  {kb(size / counts[-1])}  {site}")
    print("\nFirst start (Events posted, Deployments created), KB per pair by structure:")
    for name, size in runs[counts[-1]]["first"]["structures"].items():
        print(f"  {kb(size / counts[-1])}  {name}")
    print("\nOne cached Deployment:\n" + json.dumps(largest["sample"], indent=1))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, action="append")
    parser.add_argument("--no-go", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.count = args.count[0]
        return child(args)
    counts = sorted(args.count or [1000, 5000])
    goctl = None if args.no_go else goctl_build.binary_path()
    if goctl is not None and not goctl.exists():
        print(f"go yardstick skipped: {goctl} is not built (tests/bench/goctl_build.py)")
        goctl = None
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    go: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            ControlPlane(Path(tmp), controller_manager=True,
                         assets=install(log=lambda _: None)) as plane:
        admin = Kube.from_kubeconfig(str(plane.kubeconfig), user_agent="memprof",
                                     max_connections=16)
        crds.install(admin)
        for count in counts:
            ns = f"memprof-{count}"
            print(f"N={count}: creating", flush=True)
            create(admin, ns, count)
            runs[count] = {}
            for mode, trace in (("first", True), ("cold", False), ("cold-trace", True)):
                print(f"N={count}: {mode}", flush=True)
                runs[count][mode] = run_child(plane.kubeconfig, ns, count, trace)
            if goctl is not None:
                print(f"N={count}: go", flush=True)
                go[count] = go_run(goctl, plane.kubeconfig, ns)
    report(counts, runs, go)
    return 0


if __name__ == "__main__":
    sys.exit(main())
