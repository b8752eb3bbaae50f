"""`ssa-controller lab`: run the chosen scenarios on a target, print the table, draw the plots.

Exit code: 0 when every bad controller showed its failure and ours kept every bound, 1 when
not, 2 on an error (no binaries for the local control plane, an unreachable cluster, matplotlib
missing for --plot)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ssa_controller.envtest.assets import AssetsError
from ssa_controller.envtest.controlplane import ControlPlaneError

from . import plot, procs, report, target
from .results import ModeResult
from .scenarios import SCENARIOS, Lab

MODES = tuple(SCENARIOS)
DEFAULT_SECONDS = 8.0
ERRORS = (ValueError, plot.PlotUnavailable, AssetsError, ControlPlaneError,
          procs.ControllerFailed)
"""What `main` raises for a lab that cannot run as asked (exit code 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modes", nargs="*", metavar="MODE",
                        help=f"scenarios to run (default: all): {', '.join(MODES)}")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true",
                       help="run on the embedded control plane (the default)")
    where.add_argument("--kubeconfig", help="run on this cluster instead, in namespaces the lab "
                       "creates and deletes; figures that need the audit log are not measured")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help=f"measuring time of each run (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="write PNG plots there (needs the `lab` extra: matplotlib)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="text (default) or json")


def progress(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _target(kubeconfig: str | None) -> Iterator[target.Target]:
    if kubeconfig:
        progress(f"cluster from {kubeconfig} (no audit log: audit figures not measured)")
        with target.given(kubeconfig) as found:
            yield found
    else:
        progress("starting the local control plane")
        with target.local() as found:
            yield found


def run(modes: Sequence[str], seconds: float, kubeconfig: str | None = None) -> list[ModeResult]:
    """Run `modes` in order and return their results."""
    results = []
    with _target(kubeconfig) as where:
        lab = Lab(where, seconds, where.workdir)
        for mode in modes:
            progress(f"{mode}: the bad controller, then ours ({seconds:g} s each)")
            started = time.monotonic()
            result = SCENARIOS[mode](lab)
            result.seconds = time.monotonic() - started
            results.append(result)
    return results


def main(args: argparse.Namespace) -> int:
    modes = list(dict.fromkeys(args.modes)) or list(MODES)
    unknown = [m for m in modes if m not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown lab mode {', '.join(unknown)}: choose from {', '.join(MODES)}")
    if args.seconds < 2:
        raise ValueError(f"--seconds must be at least 2, got {args.seconds:g}")
    if args.plot is not None:
        plot.check()
    results = run(modes, args.seconds, args.kubeconfig)
    where = "on a given cluster" if args.kubeconfig else "on the local control plane"
    context = report.context(args.seconds, where)
    print(report.as_json(results, context) if args.output == "json"
          else report.text(results, context))
    if args.plot is not None:
        for path in plot.draw(results, args.plot):
            progress(f"wrote {path}")
    as_expected = all(r.bad_fails is not False and r.ours_holds is not False for r in results)
    return 0 if as_expected else 1
