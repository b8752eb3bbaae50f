"""DELIBERATELY WRONG, used only by the failure-mode lab: the broken controller.

It never records `observedGeneration` and writes a status that changes on every reconcile (a
timestamp in its condition). Its own status write is a MODIFIED event of the AppTask it watches,
which it reconciles again, so every AppTask is reconciled, applied and written for ever.
"""

from __future__ import annotations

from ssa_controller.client.wire import MERGE_PATCH, ApiError, micro_time, rfc3339

from . import _base


def main() -> None:
    args = _base.arguments("broken")
    kube = _base.client(args, "broken")

    def reconcile(kind: str, task: _base.Obj) -> None:
        if kind == "DELETED":
            return
        try:
            _base.apply_deployment(kube, task)
            # WRONG: a status that differs every time, without observedGeneration.
            condition = {"type": "Ready", "status": "True", "reason": "Reconciled",
                         "message": f"reconciled at {micro_time()}",
                         "lastTransitionTime": rfc3339()}
            kube.patch(_base.status_path(task), {"status": {"conditions": [condition]}},
                       MERGE_PATCH)
        except ApiError:
            pass

    _base.watch_forever(kube, _base.apptasks_path(args.namespace), reconcile,
                        on_listed=lambda: _base.ready(args))


if __name__ == "__main__":
    main()
