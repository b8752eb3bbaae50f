"""`--plot DIR`: PNGs of what a curve says better than a number (request rate of the retry bomb,
generation of the fight, RSS of the leak). matplotlib is the optional extra `lab`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .results import Curve, ModeResult

MISSING = ("--plot needs matplotlib, which is not installed: "
           "pip install 'ssa-controller[lab]' (or pip install matplotlib)")


class PlotUnavailable(Exception):
    """matplotlib is missing."""


def check() -> None:
    """Fail early, before any scenario runs, if plots cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailable(MISSING) from exc


def draw(results: Sequence[ModeResult], directory: Path) -> list[Path]:
    check()
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        for name, curve in result.curves.items():
            path = directory / f"{name}.png"
            _one(pyplot, curve, path)
            written.append(path)
    return written


def _one(pyplot: object, curve: Curve, path: Path) -> None:
    figure, axes = pyplot.subplots(figsize=(6, 3))  # type: ignore[attr-defined]
    for label, points, style in (("bad controller", curve.bad, "tab:red"),
                                 ("ssa-controller", curve.ours, "tab:blue")):
        if points:
            xs, ys = zip(*points, strict=True)
            axes.step(xs, ys, where="post", label=label, color=style)
    if curve.log_y:
        axes.set_yscale("symlog", linthresh=1)
    axes.set_title(curve.title, fontsize=10)
    axes.set_xlabel("seconds")
    axes.set_ylabel(curve.ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    pyplot.close(figure)  # type: ignore[attr-defined]
