"""DELIBERATELY WRONG, used only by the failure-mode lab: the conflicting controller.

It force-applies its Deployment again on every event about it, at once, whoever changed it: with
another writer setting the same field, the two take it from each other as fast as they can, and
every take-back is a new Deployment generation (a new rollout). It never notices the fight.
"""

from __future__ import annotations

import threading

from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import ApiError

from . import _base


def main() -> None:
    args = _base.arguments("conflicting")
    kube = _base.client(args, "conflicting")

    def on_apptask(kind: str, task: _base.Obj) -> None:
        if kind != "DELETED":
            try:
                _base.apply_deployment(kube, task)
            except ApiError:
                pass

    def on_deployment(kind: str, deployment: _base.Obj) -> None:
        if kind == "DELETED":
            return
        name = deployment["metadata"]["labels"][_base.OWNER_LABEL]
        try:  # WRONG: re-apply at once on every change, with force, no damping.
            _base.apply_deployment(kube, kube.get(APPTASKS.path(args.namespace, name)))
        except ApiError:
            pass

    threading.Thread(target=_base.watch_forever, daemon=True, args=(
        kube, _base.apptasks_path(args.namespace), on_apptask)).start()
    _base.watch_forever(kube, DEPLOYMENTS.path(args.namespace), on_deployment,
                        {"labelSelector": _base.OWNER_LABEL}, on_listed=lambda: _base.ready(args))


if __name__ == "__main__":
    main()
