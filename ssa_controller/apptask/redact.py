"""What a dry run's output leaves out: env values (passwords and tokens often sit there) are
masked in dry-run plans, in the log of a dry run and in `ssa-controller diff` unless
`--show-values` asks for them, as `kubectl diff` masks a Secret's data. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MASK = "***"


def _masked(value: Any, path: tuple[str, ...]) -> Any:
    """`value`, found at JSON pointer `path`, with every env value under it masked."""
    if len(path) >= 3 and path[-3] == "env" and path[-1] == "value" and isinstance(value, str):
        return MASK
    if isinstance(value, dict):
        return {k: _masked(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, (*path, str(i))) for i, v in enumerate(value)]
    return value


def env_values(patch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """An RFC 6902 patch with the values of env variables masked (a copy)."""
    shown = []
    for op in patch:
        if "value" in op:
            path = tuple(op["path"].split("/")[1:]) if op["path"] else ()
            op = {**op, "value": _masked(op["value"], path)}
        shown.append(op)
    return shown
