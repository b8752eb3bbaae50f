"""What one reconcile of an AppTask did: the `outcome` label of ssa_controller_applies_total.

Below both the reconciler, which decides an outcome, and the metrics, which count them."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What one reconcile did; its value is the `outcome` label of ssa_controller_applies_total
    (SKIPPED is not counted there)."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    DRY_RUN = "dry_run"
    INVALID = "invalid"
    ERROR = "error"
    SKIPPED = "skipped"
