"""DELIBERATELY WRONG, used only by the failure-mode lab: the controller that is not crash-safe.

It remembers which Deployment belongs to which AppTask only in memory, creates Deployments with
`generateName` (not idempotent), records success in the status before doing the work, and sets
no ownerReference. Killed and restarted, it forgets its Deployments and creates duplicates,
misses deletions (orphans) and trusts statuses written for work it never finished (half-applied).
"""

from __future__ import annotations

import time

from ssa_controller.client.resources import DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH, ApiError

from . import _base

WORK_SECONDS = 0.05
"""Time spent preparing a Deployment (rendering, checks) between the status and the write."""


def main() -> None:
    args = _base.arguments("crash-loop")
    kube = _base.client(args, "crash-loop")
    deployments: dict[str, str] = {}  # WRONG: the only record of what it created

    def reconcile(kind: str, task: _base.Obj) -> None:
        name, generation = task["metadata"]["name"], task["metadata"]["generation"]
        try:
            if kind == "DELETED":
                if name in deployments:
                    kube.delete(DEPLOYMENTS.path(args.namespace, deployments.pop(name)))
                return
            if task.get("status", {}).get("observedGeneration") == generation:
                return
            # WRONG: success is recorded before the work is done.
            kube.patch(_base.status_path(task), {"status": {"observedGeneration": generation,
                                                            "phase": "Ready"}}, MERGE_PATCH)
            time.sleep(WORK_SECONDS)
            body = _base.deployment_for(task, owned=False)  # WRONG: no ownerReference
            if name in deployments:
                body["metadata"]["name"] = deployments[name]
                kube.apply(DEPLOYMENTS.path(args.namespace, deployments[name]), body,
                           field_manager=_base.FIELD_MANAGER, force=True)
            else:  # WRONG: not idempotent
                del body["metadata"]["name"]
                body["metadata"]["generateName"] = f"{name}-"
                created = kube.create(DEPLOYMENTS.path(args.namespace), body)
                deployments[name] = created["metadata"]["name"]
        except ApiError:
            pass

    _base.watch_forever(kube, _base.apptasks_path(args.namespace), reconcile,
                        on_listed=lambda: _base.ready(args))


if __name__ == "__main__":
    main()
