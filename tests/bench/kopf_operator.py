"""The kopf yardstick for the benchmark: the same job as ssa-controller, written with kopf.

    KUBECONFIG=K BENCH_WORKERS=4 kopf run --standalone --namespace NS tests/bench/kopf_operator.py

(kopf from PyPI: `pip install -e '.[bench]'`.) On an AppTask's creation or spec change: one
server-side apply of the Deployment rendered by ssa_controller.apptask.desired.render (field manager
"ssa-controller", force, like the controller) and one status patch computed by
apptask.status. On a change of a managed Deployment: the owner's status, patched only if
it differs. Event posting is off; `max_workers` is the controller's worker count. Everything else
is kopf's default (it records the last handled spec in an annotation: that is how kopf works).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssa_controller.apptask import desired, status  # noqa: E402
from ssa_controller.client.kube import Kube  # noqa: E402
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS  # noqa: E402
from ssa_controller.client.wire import MERGE_PATCH, rfc3339  # noqa: E402

FIELD_MANAGER = "ssa-controller"
kube = Kube.from_kubeconfig(os.environ.get("KUBECONFIG"), user_agent="bench-kopf")


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.execution.max_workers = int(os.environ.get("BENCH_WORKERS", "4"))
    settings.watching.server_timeout = 600


def write_status(apptask: dict, deployment: dict | None) -> None:
    meta = apptask["metadata"]
    wanted = status.compute(apptask, deployment, status.Sync.synced(meta["name"]), rfc3339())
    patch = status.patch_for(apptask.get("status"), wanted)
    if patch is not None:
        kube.patch(APPTASKS.path(meta["namespace"], meta["name"], "status"), patch, MERGE_PATCH)


@kopf.index("example.com", "v1", "apptasks")
def apptasks(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): plain(body)}


@kopf.on.create("example.com", "v1", "apptasks")
@kopf.on.update("example.com", "v1", "apptasks", field="spec")
def reconcile(body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    apptask = plain(body)
    answer = kube.apply(DEPLOYMENTS.path(namespace, name), desired.render(apptask),
                        field_manager=FIELD_MANAGER, force=True)
    write_status(apptask, answer)


@kopf.on.event("apps", "v1", "deployments",
               labels={desired.MANAGED_BY_LABEL: desired.MANAGED_BY_VALUE})
def deployment_changed(body: kopf.Body, namespace: str, type: str | None,
                       apptasks: kopf.Index, **_: Any) -> None:
    if type not in ("ADDED", "MODIFIED"):
        return
    owner = next((r for r in body.metadata.get("ownerReferences") or ()
                  if r.get("kind") == desired.KIND), None)
    if owner is None:
        return
    for apptask in apptasks.get((namespace, owner["name"]), ()):
        if apptask["metadata"].get("uid") == owner.get("uid"):
            write_status(apptask, plain(body))
