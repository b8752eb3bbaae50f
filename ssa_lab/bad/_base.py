"""What the deliberately bad lab controllers share: arguments, a client, a naive list-then-watch
loop and a minimal Deployment body. (The watch loop itself is not the point of any lesson: it
relists on every error and has no backoff, which the bad controllers do not live long enough to
show.) Used only by the failure-mode lab."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, ListOptions
from ssa_controller.client.wire import ApiError

Obj = dict[str, Any]
FIELD_MANAGER = "lab-bad-controller"
OWNER_LABEL = "lab.ssa-controller.dev/apptask"
"""The label every bad controller puts on its Deployments, naming the AppTask."""


def arguments(mode: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"lab-bad-{mode}", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--ready-file", type=Path, help="touched once the first list is done")
    return parser.parse_args()


def client(args: argparse.Namespace, mode: str) -> Kube:
    return Kube.from_kubeconfig(args.kubeconfig, user_agent=f"ssa-lab-bad/{mode}",
                                request_timeout=10.0)


def ready(args: argparse.Namespace) -> None:
    if args.ready_file is not None:
        args.ready_file.touch()


def watch_forever(kube: Kube, path: str, handle: Callable[[str, Obj], None],
                  params: ListOptions | None = None,
                  on_listed: Callable[[], None] | None = None) -> None:
    """List `path`, hand every item to `handle` as ADDED, then follow the watch; on any end or
    error, list again."""
    while True:
        try:
            listed = kube.list(path, params)
            for item in listed.get("items", []):
                handle("ADDED", item)
            if on_listed is not None:
                on_listed()
                on_listed = None
            version = listed["metadata"]["resourceVersion"]
            with kube.watch(path, {**(params or {}), "resourceVersion": version,
                                   "timeoutSeconds": 60}, timeout=75) as stream:
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        handle(event["type"], event["object"])
        except ApiError:
            time.sleep(0.2)


def deployment_for(task: Obj, *, owned: bool = True) -> Obj:
    """The Deployment an AppTask asks for (image, replicas), named after it."""
    meta, spec = task["metadata"], task.get("spec", {})
    labels = {"app": meta["name"]}
    body: Obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "labels": {OWNER_LABEL: meta["name"]}},
        "spec": {"replicas": spec.get("replicas", 1), "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": spec["image"]}]}}},
    }
    if owned:
        body["metadata"]["ownerReferences"] = [{
            "apiVersion": task["apiVersion"], "kind": task["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]
    return body


def apply_deployment(kube: Kube, task: Obj) -> Obj:
    meta = task["metadata"]
    return kube.apply(DEPLOYMENTS.path(meta["namespace"], meta["name"]), deployment_for(task),
                      field_manager=FIELD_MANAGER, force=True)


def apptasks_path(namespace: str) -> str:
    return APPTASKS.path(namespace)


def status_path(task: Obj) -> str:
    return APPTASKS.path(task["metadata"]["namespace"], task["metadata"]["name"], "status")
