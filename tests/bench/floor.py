"""The floor for the benchmark: the least a client must do per AppTask.

    python tests/bench/floor.py --kubeconfig K --namespace NS [--workers 4]

List then watch AppTasks in one namespace; for every generation not yet handled, one server-side
apply of the Deployment rendered by apptask.desired.render (the controller's body), one of the
Service rendered by apptask.service.render where the spec has one, and one status patch
(ssa_controller.apptask.status.compute from the apply's answer), through
ssa_controller.client.kube.Kube (keep-alive), WORKERS threads; an API error makes it try the
AppTask (or the list and watch) again a second later. No cache of Deployments, no ownership
checks, no Events, no readiness tracking, no resync, no backoff. A benchmark yardstick, not a
controller.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssa_controller.apptask import desired, service, status  # noqa: E402
from ssa_controller.client.kube import Kube  # noqa: E402
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, SERVICES  # noqa: E402
from ssa_controller.client.wire import MERGE_PATCH, ApiError, rfc3339  # noqa: E402

FIELD_MANAGER = "ssa-controller"
RETRY = 1.0
"""Seconds before a failed AppTask, or a failed list or watch, is tried again."""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    kube = Kube.from_kubeconfig(args.kubeconfig, user_agent="bench-floor")
    latest: dict[str, dict] = {}
    done: dict[str, int] = {}
    lock = threading.Lock()
    work: queue.Queue[str] = queue.Queue()

    def offer(obj: dict) -> None:
        name, gen = obj["metadata"]["name"], obj["metadata"].get("generation", 0)
        with lock:
            latest[name] = obj
            if done.get(name) == gen or obj.get("status", {}).get("observedGeneration") == gen:
                done[name] = gen
                return
            done[name] = gen
        work.put(name)

    def handle(name: str) -> None:
        with lock:
            apptask = latest[name]
        ns = args.namespace
        body = service.render(apptask)
        if body is not None:
            kube.apply(SERVICES.path(ns, name), body, field_manager=FIELD_MANAGER, force=True)
        answer = kube.apply(DEPLOYMENTS.path(ns, name), desired.render(apptask),
                            field_manager=FIELD_MANAGER, force=True)
        wanted = status.compute(apptask, answer, status.Sync.synced(name), rfc3339())
        patch = status.patch_for(apptask.get("status"), wanted)
        if patch is not None:
            kube.patch(APPTASKS.path(ns, name, "status"), patch, MERGE_PATCH)

    def worker() -> None:
        while True:
            name = work.get()
            try:
                handle(name)
            except ApiError as exc:  # the least a client must do includes trying again
                if exc.status != 404:
                    print(f"floor: {name}: {exc}; again in {RETRY}s", file=sys.stderr)
                    threading.Timer(RETRY, work.put, (name,)).start()

    for _ in range(args.workers):
        threading.Thread(target=worker, daemon=True).start()
    rv = ""
    while True:
        try:
            if not rv:
                listed = kube.list(APPTASKS.path(args.namespace))
                for item in listed["items"]:
                    offer(item)
                rv = listed["metadata"]["resourceVersion"]
            for event in kube.watch(APPTASKS.path(args.namespace),
                                    {"resourceVersion": rv, "timeoutSeconds": 3600,
                                     "allowWatchBookmarks": True}, timeout=3700):
                if event["type"] == "ERROR":
                    raise ApiError(event["object"].get("code", 0), "", str(event["object"]))
                rv = event["object"]["metadata"].get("resourceVersion", rv)
                if event["type"] in ("ADDED", "MODIFIED"):
                    offer(event["object"])
        except ApiError as exc:
            print(f"floor: watch: {exc}; listing again in {RETRY}s", file=sys.stderr)
            rv = ""
            time.sleep(RETRY)


if __name__ == "__main__":
    sys.exit(main())
