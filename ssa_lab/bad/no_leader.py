"""DELIBERATELY WRONG, used only by the failure-mode lab: the controller without leader election.

Run as two replicas, both reconcile every AppTask: each writes every Deployment and status, and
their writes race (who wins is whoever wrote last).
"""

from __future__ import annotations

from ssa_controller.client.wire import MERGE_PATCH, ApiError

from . import _base


def main() -> None:
    args = _base.arguments("no-leader")
    kube = _base.client(args, "no-leader")

    def reconcile(kind: str, task: _base.Obj) -> None:
        if kind == "DELETED":
            return
        generation = task["metadata"]["generation"]
        if task.get("status", {}).get("observedGeneration") == generation:
            return
        try:  # WRONG: nothing stops the other replica from doing the same at the same time.
            _base.apply_deployment(kube, task)
            kube.patch(_base.status_path(task),
                       {"status": {"observedGeneration": generation, "phase": "Ready"}},
                       MERGE_PATCH)
        except ApiError:
            pass

    _base.watch_forever(kube, _base.apptasks_path(args.namespace), reconcile,
                        on_listed=lambda: _base.ready(args))


if __name__ == "__main__":
    main()
