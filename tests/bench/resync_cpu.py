"""Benchmark: the CPU a periodic resync costs over converged AppTasks, in-process.

    .venv/bin/python tests/bench/resync_cpu.py [--count 20000] [--passes 5]

A Controller without an API server (its client refuses every request: a resync over converged
AppTasks sends none) gets COUNT AppTasks of the benchmark's shape (bench_compare.apptask) and
their Deployments in its caches, as its watches deliver them once the controller applied each
Deployment, the Deployment controller observed it and the controller wrote the status. One
resync warms up (the first reconcile of each compares its Deployment), then each of PASSES
resyncs enqueues every AppTask and reconciles each as a worker does (Controller.process), in
this thread. Prints the CPU seconds per resync (the median of the passes, [min-max]), per
reconcile, and the requests sent. Run it on two checkouts to compare them. Not a test.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench_compare import apptask  # noqa: E402  (beside this file)

from ssa_controller.apptask import desired, status  # noqa: E402
from ssa_controller.client.wire import ApiError  # noqa: E402
from ssa_controller.controller import Controller  # noqa: E402
from ssa_controller.runtime import fieldset  # noqa: E402
from ssa_controller.serving.metrics import Metrics  # noqa: E402
from ssa_controller.settings.config import Config  # noqa: E402

NAMESPACE = "bench"
NOW = "2026-01-01T00:00:00Z"


class NoApiServer:
    """Refuses every request, and counts them."""

    def __init__(self) -> None:
        self.requests = 0

    def __getattr__(self, verb: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            raise ApiError(503, "ServiceUnavailable", f"{verb}: no API server here")
        return refuse


class NoEvents:
    def record(self, *args: Any) -> None:
        pass


def managed(manager: str, operation: str, paths: frozenset[fieldset.Path]) -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": fieldset.to_fields(paths)}


def converged(i: int, manager: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """AppTask i and its Deployment as the watches deliver them once everything is done."""
    task = apptask(NAMESPACE, f"at-{i}")
    task["metadata"].update(uid=f"apptask-{i}", generation=1, resourceVersion=str(3 * i + 1))
    body = desired.render(task)
    deployment = copy.deepcopy(body)
    observed = frozenset({("f:status", "f:observedGeneration"), ("f:status", "f:replicas")})
    deployment["metadata"].update(
        uid=f"deployment-{i}", generation=1, resourceVersion=str(3 * i + 2),
        managedFields=[managed(manager, "Apply", fieldset.body_paths(body)),
                       managed("kube-controller-manager", "Update", observed)])
    deployment["status"] = {"observedGeneration": 1, "replicas": 0, "updatedReplicas": 0,
                            "readyReplicas": 0, "availableReplicas": 0}
    task["status"] = status.compute(task, deployment, status.Sync.synced(task["metadata"]["name"]),
                                    NOW)
    task["metadata"]["resourceVersion"] = str(3 * i + 3)  # the status write's answer
    return task, deployment


def drain(controller: Controller) -> int:
    """Reconcile every ready key as a worker does; how many."""
    done = 0
    while (key := controller.queue.get(timeout=0)) is not None:
        controller.process(key)
        controller.queue.done(key)
        done += 1
    return done


def revision() -> str:
    found = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    kube = NoApiServer()
    config = Config(namespaces=[NAMESPACE])
    controller = Controller(config, kube, NoEvents(), Metrics())  # type: ignore[arg-type]
    controller.metrics.register_controller("apptask", config.workers)
    apptasks, deployments = controller.watchers  # one namespace: one watch of each
    for i in range(args.count):  # as their watches deliver them
        task, deployment = converged(i, config.field_manager)
        apptasks.on_change(*apptasks.writer.put(task))
        deployments.on_change(*deployments.writer.put(deployment))
    warmed = drain(controller)
    seconds = []
    for _ in range(args.passes):
        controller.resync()
        started = time.process_time()
        reconciled = drain(controller)
        seconds.append(time.process_time() - started)
        assert reconciled == args.count, reconciled
    median = statistics.median(seconds)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, python {platform.python_version()}, "
          f"revision {revision()}; cpu in s, per reconcile in µs")
    print(f"{'count':>7} {'warm-up':>8} {'passes':>6} {'cpu/resync':>22} {'per reconcile':>13} "
          f"{'requests':>8}")
    print(f"{args.count:>7} {warmed:>8} {args.passes:>6} "
          f"{f'{median:.2f} [{min(seconds):.2f}-{max(seconds):.2f}]':>22} "
          f"{median / args.count * 1e6:>13.1f} {kube.requests:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
