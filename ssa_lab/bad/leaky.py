"""DELIBERATELY WRONG, used only by the failure-mode lab: the leaky controller.

It keeps every object and every watch event it ever saw ("for debugging"), deleted objects
included, and starts a timer thread per AppTask that nothing ever stops. Memory and threads grow
with every create/delete cycle until the process is OOM-killed and crash-loops.
"""

from __future__ import annotations

import threading

from ssa_controller.client.resources import DEPLOYMENTS
from ssa_controller.client.wire import ApiError

from . import _base

HISTORY: list[_base.Obj] = []  # WRONG: every event, for ever
SEEN: dict[str, list[_base.Obj]] = {}  # WRONG: every version of every object, never pruned


def main() -> None:
    args = _base.arguments("leaky")
    kube = _base.client(args, "leaky")
    forever = threading.Event()

    def reconcile(kind: str, task: _base.Obj) -> None:
        HISTORY.append({"type": kind, "object": task})
        SEEN.setdefault(task["metadata"]["uid"], []).append(task)
        if kind == "ADDED":  # WRONG: a thread per object that outlives it
            threading.Thread(target=forever.wait, daemon=True).start()
        if kind != "DELETED":
            try:
                HISTORY.append({"type": "APPLIED", "object": _base.apply_deployment(kube, task)})
            except ApiError:
                pass

    def remember(kind: str, deployment: _base.Obj) -> None:
        HISTORY.append({"type": kind, "object": deployment})
        SEEN.setdefault(deployment["metadata"]["uid"], []).append(deployment)

    threading.Thread(target=_base.watch_forever, daemon=True, args=(
        kube, DEPLOYMENTS.path(args.namespace), remember,
        {"labelSelector": _base.OWNER_LABEL})).start()
    _base.watch_forever(kube, _base.apptasks_path(args.namespace), reconcile,
                        on_listed=lambda: _base.ready(args))


if __name__ == "__main__":
    main()
