"""DELIBERATELY WRONG, used only by the failure-mode lab: the controller watching the wrong
resources.

It watches every Deployment of the cluster (no label selector, all namespaces) and reconciles on
each event: a fresh GET of the Deployment and of the AppTask of that name. Every unrelated
Deployment change in the cluster costs it requests, and the API server the watch traffic.
"""

from __future__ import annotations

import threading

from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import ApiError

from . import _base


def main() -> None:
    args = _base.arguments("wrong-watch")
    kube = _base.client(args, "wrong-watch")

    def on_apptask(kind: str, task: _base.Obj) -> None:
        if kind != "DELETED":
            try:
                _base.apply_deployment(kube, task)
            except ApiError:
                pass

    def on_deployment(kind: str, deployment: _base.Obj) -> None:
        meta = deployment["metadata"]
        try:  # WRONG: requests for every Deployment of the cluster, related or not
            kube.get(DEPLOYMENTS.path(meta["namespace"], meta["name"]))
            on_apptask(kind, kube.get(APPTASKS.path(meta["namespace"], meta["name"])))
        except ApiError:
            pass

    threading.Thread(target=_base.watch_forever, daemon=True, args=(
        kube, _base.apptasks_path(args.namespace), on_apptask)).start()
    _base.watch_forever(kube, DEPLOYMENTS.path(), on_deployment,  # WRONG: all of them
                        on_listed=lambda: _base.ready(args))


if __name__ == "__main__":
    main()
