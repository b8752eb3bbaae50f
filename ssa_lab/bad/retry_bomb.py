"""DELIBERATELY WRONG, used only by the failure-mode lab: the retry bomb.

When an apply fails it tries again at once, for ever: no backoff, no rate limit. One refused
object (here: a ResourceQuota that allows no Deployment) becomes a flat-out stream of requests.
"""

from __future__ import annotations

import threading

from ssa_controller.client.wire import ApiError

from . import _base


def main() -> None:
    args = _base.arguments("retry-bomb")
    kube = _base.client(args, "retry-bomb")
    started: set[str] = set()

    def retry_until_applied(task: _base.Obj) -> None:
        while True:
            try:
                _base.apply_deployment(kube, task)
                return
            except ApiError:
                continue  # WRONG: no backoff at all

    def reconcile(kind: str, task: _base.Obj) -> None:
        uid = task["metadata"]["uid"]
        if kind != "DELETED" and uid not in started:
            started.add(uid)
            threading.Thread(target=retry_until_applied, args=(task,), daemon=True).start()

    _base.watch_forever(kube, _base.apptasks_path(args.namespace), reconcile,
                        on_listed=lambda: _base.ready(args))


if __name__ == "__main__":
    main()
