"""What a scenario produces: table rows (one figure of the bad controller beside ours, the
bound ours must keep, and whether each side did what the lab expects) and curves for plots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .measure import Point


@dataclass
class Row:
    mode: str
    measure: str
    bad: float | None
    """None: not measurable on this target (no audit log)."""
    ours: float | None
    bound: str
    """What ours must show, in words."""
    bad_fails: bool | None
    """The bad controller shows its failure in this figure (None: not measured)."""
    ours_holds: bool | None
    """Ours keeps its bound (None: not measured)."""
    unit: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Curve:
    """One plot: a line for the bad controller and one for ours."""

    title: str
    ylabel: str
    bad: list[Point]
    ours: list[Point]
    log_y: bool = False


@dataclass
class ModeResult:
    mode: str
    rows: list[Row] = field(default_factory=list)
    curves: dict[str, Curve] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall time the mode took, setup included."""

    @property
    def bad_fails(self) -> bool | None:
        """The bad controller showed its failure in at least one measured figure."""
        measured = [r.bad_fails for r in self.rows if r.bad_fails is not None]
        return any(measured) if measured else None

    @property
    def ours_holds(self) -> bool | None:
        """Ours kept every measured bound."""
        measured = [r.ours_holds for r in self.rows if r.ours_holds is not None]
        return all(measured) if measured else None
