"""The lab's output: one table (the bad controller's figure beside ours on each row), as text or
JSON."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .results import ModeResult, Row

NOT_MEASURED = "n/m"
"""Not measurable on this target (no audit log)."""


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return NOT_MEASURED
    if unit == "yes/no":
        return "yes" if value else "no"
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value)}{unit}"
    return f"{value:.1f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"


def _verdict(row: Row) -> str:
    bad = {True: "fails", False: "-", None: NOT_MEASURED}[row.bad_fails]
    ours = {True: "ok", False: "EXCEEDED", None: NOT_MEASURED}[row.ours_holds]
    return f"{bad} / {ours}"


def text(results: Sequence[ModeResult], context: dict[str, Any]) -> str:
    header = ("mode", "measure", "bad", "ours", "ours' bound", "bad / ours")
    rows = [(r.mode, r.measure, _figure(r.bad, r.unit), _figure(r.ours, r.unit), r.bound,
             _verdict(r)) for result in results for r in result.rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
             for line in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"{context['date']}, {context['machine']}, --seconds {context['seconds']:g}, "
                 f"{context['target']}; " + ", ".join(
                     f"{r.mode} {r.seconds:.0f}s" for r in results))
    if any(r.bad is None or r.ours is None for result in results for r in result.rows):
        lines.append(f"{NOT_MEASURED}: needs the API server's audit log, which this target does "
                     "not give (run `ssa-controller lab --local` to measure it)")
    failed = [r.mode for r in results if r.bad_fails is False or r.ours_holds is False]
    unmeasured = [r.mode for r in results if r.bad_fails is None or r.ours_holds is None]
    lines.append(f"NOT AS EXPECTED: {', '.join(failed)}" if failed else
                 "every bad controller failed, ours kept every bound" + (
                     f" (not measured here: {', '.join(unmeasured)})" if unmeasured else ""))
    return "\n".join(lines)


def as_json(results: Sequence[ModeResult], context: dict[str, Any]) -> str:
    return json.dumps({**context, "modes": [
        {"mode": r.mode, "seconds": round(r.seconds, 1), "bad_fails": r.bad_fails,
         "ours_holds": r.ours_holds, "rows": [row.as_dict() for row in r.rows]}
        for r in results]}, indent=2)


def context(seconds: float, target: str) -> dict[str, Any]:
    cpus = len(__import__("os").sched_getaffinity(0))
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {cpus} cores, Python {platform.python_version()}",
            "seconds": seconds, "target": target}
