"""The benchmark's figures and its table (tests/bench/bench_compare.py). Pure, no I/O.

Each scenario runs several times per contender (--repeat); the table shows per figure the
median of the runs and, when there are several, [min-max]. Times are also shown as a ratio to
the floor's: the median of each run's ratio to the floor's run of the same round.
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FLOOR = "floor"
RATIO_KEYS = ("applied", "status", "ready")
TWO_DIGITS = ("mb_per_1000", "reconciles")

Runs = dict[tuple[str, str], dict[str, list[dict[str, Any]]]]
"""(scenario, count) -> contender -> its figures, one dict per run, in the order of the runs."""


@dataclass(frozen=True)
class Requests:
    """Requests per AppTask (or per change), with the count by verb and resource."""

    per: float
    parts: str

    def __str__(self) -> str:
        return f"{self.per:.2f} ({self.parts})"


def by_verb(events: Iterable[Any], per: int) -> Requests:
    """The requests among audit `events` other than watches, per `per` AppTasks."""
    counts = collections.Counter(
        f"{e.verb} {e.resource}{'/' + e.subresource if e.subresource else ''}" for e in events
        if e.verb != "watch")
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return Requests(sum(counts.values()) / per, parts or "none")


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary(values: list[Any], digits: int = 1) -> str:
    """The median of the runs' values, then [min-max] when there are several; "-" for none.
    Requests: the run with the median count (the lower one of an even number), with its
    breakdown."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    if isinstance(present[0], Requests):
        ordered = sorted(present, key=lambda r: r.per)
        middle = ordered[(len(ordered) - 1) // 2]
        spread = f" [{ordered[0].per:.2f}-{ordered[-1].per:.2f}]" if len(ordered) > 1 else ""
        return f"{middle.per:.2f}{spread} ({middle.parts})"
    median = statistics.median(present)
    if all(isinstance(v, int) for v in present) and median == int(median):
        median = int(median)
    if len(present) == 1:
        return fmt(median, digits)
    return f"{fmt(median, digits)} [{fmt(min(present), digits)}-{fmt(max(present), digits)}]"


def ratio(values: list[Any], floor: list[Any]) -> float | None:
    """The median of the runs' ratios to the floor's run of the same round (None without any)."""
    ratios = [v / f for v, f in zip(values, floor, strict=False) if v is not None and f]
    return statistics.median(ratios) if ratios else None


def table(results: Runs) -> str:
    rows = []
    for (scenario, count), per in results.items():
        floor = per.get(FLOOR, [])
        for name, runs in per.items():
            cells = []
            for key in runs[0]:
                values = [run.get(key) for run in runs]
                text = summary(values, 2 if key in TWO_DIGITS else 1)
                if key == "busy":
                    text += "%"
                relative = ratio(values, [run.get(key) for run in floor]) \
                    if key in RATIO_KEYS and name != FLOOR else None
                if relative is not None:
                    text += f" ({relative:.2f}x)"
                cells.append(f"{key}={text}")
            rows.append(f"{scenario:8} {count:>6} {name:11} " + "  ".join(cells))
    return "\n".join(rows)
