"""Deliberately bad controllers, one short module each, for the failure-mode lab only.

Every one of them is WRONG ON PURPOSE: each reproduces one classic controller failure so that
`ssa-controller lab` can measure it beside this project's controller. Never run them against a
cluster you care about, and never copy them. Each runs as its own process:
`python -m ssa_lab.bad.<mode> --kubeconfig K --namespace NS --ready-file F`.
"""

MODULES = {
    "broken": "broken",
    "conflicting": "conflicting",
    "retry-bomb": "retry_bomb",
    "leaky": "leaky",
    "no-leader": "no_leader",
    "wrong-watch": "wrong_watch",
    "crash-loop": "crash_loop",
}
