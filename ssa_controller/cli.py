"""The command line: `ssa-controller run | diff | install-crds | lab`. The failure-mode lab is a
package of its own (ssa_lab: not in the runtime package nor the image, its bad controllers are
wrong on purpose), loaded by the `lab` command only, which parses its own arguments."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from . import crds, logs
from .config import Config, ConfigError, load_config, parse_config
from .diff import Action, Plan, render_text
from .kube import ApiError, CredentialsError, Kube
from .runner import Process

log = logging.getLogger("ssa_controller")
EXIT_ERROR = 2
LAB_HELP = ("the failure-mode lab: deliberately bad controllers beside this one, measured (exit "
            "1: not as expected)")


class UsageError(Exception):
    """The command line cannot be carried out as given."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssa-controller", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                       "in-cluster config, ~/.kube/config)")
        p.add_argument("--context", help="kubeconfig context")

    run = sub.add_parser("run", help="run the controller")
    run.add_argument("--config", help="controller.yaml (default: all defaults)")
    common(run)
    run.add_argument("--once", action="store_true", help="one full pass, then exit")
    run.add_argument("--dry-run", action="store_true", help="send every write with dryRun=All")
    run.add_argument("--local", action="store_true",
                     help="with no kubeconfig found, start a local control plane")
    diff = sub.add_parser("diff", help="print what a run would change (exit 0: nothing, "
                          "1: changes, 2: error)")
    diff.add_argument("--config")
    common(diff)
    diff.add_argument("-n", "--namespace", help="only this namespace")
    diff.add_argument("-o", "--output", choices=("text", "json"), default="text")
    install = sub.add_parser("install-crds", help="install or upgrade the AppTask CRD")
    common(install)
    install.add_argument("--file", type=Path, help="CRD manifest (default: manifests/crd.yaml)")
    sub.add_parser("lab", add_help=False, help=f"{LAB_HELP}; see lab --help")
    return parser


def _config(path: str | None, **overrides: object) -> Config:
    config = load_config(path) if path else parse_config({})
    return config.with_overrides(**overrides) if overrides else config


def connect(kubeconfig: str | None, context: str | None) -> Kube | None:
    """A client from the usual places, in controller-runtime's order (--kubeconfig, $KUBECONFIG,
    in-cluster service account, ~/.kube/config), or None if none. Credentials found but not
    usable (an absent kubeconfig, an unsupported field) are a UsageError naming the problem."""
    try:
        if kubeconfig or os.environ.get("KUBECONFIG"):
            return Kube.from_kubeconfig(kubeconfig, context)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return Kube.in_cluster()
        if (Path.home() / ".kube" / "config").is_file():
            return Kube.from_kubeconfig(None, context)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from exc
    return None


@contextlib.contextmanager
def _client(args: argparse.Namespace, config: Config) -> Iterator[Kube]:
    kube = connect(args.kubeconfig, args.context)
    if kube is not None:
        yield kube
        return
    if not getattr(args, "local", False):
        raise UsageError("no kubeconfig or in-cluster config found "
                         "(use --kubeconfig, or --local for a local control plane)")
    from . import local
    namespaces = (config.leader_election.namespace,) if config.leader_election.enabled else ()
    with local.cluster(namespaces) as kubeconfig:
        yield Kube.from_kubeconfig(str(kubeconfig))


def _run(args: argparse.Namespace) -> int:
    config = _config(args.config, **({"dry_run": True} if args.dry_run else {}))
    logs.setup(config.logging)
    with _client(args, config) as kube:
        process = Process(config, kube)
        if args.once:
            return _once(process)
        process.handle_signals()
        return process.run()


def _once(process: Process) -> int:
    process.events.start()
    try:
        results = process.controller.run_once()
    finally:
        process.events.stop(timeout=10.0)
    failed = [r for r in results if r.error is not None]
    log.info("one pass over %d AppTasks: %d failed", len(results), len(failed))
    return 1 if failed else 0


def _diff(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {"dry_run": True}
    if args.namespace:
        overrides["namespaces"] = (args.namespace,)
    config = _config(args.config, **overrides)
    logs.setup(config.logging)
    with _client(args, config) as kube:
        process = Process(config, kube)
        plans = [r.plan for r in process.controller.run_once() if r.plan is not None]
    print(json.dumps([p.as_dict() for p in plans], indent=2) if args.output == "json"
          else render_text(plans))
    return diff_exit_code(plans)


def diff_exit_code(plans: list[Plan]) -> int:
    """0 when nothing would change, 1 when something would, 2 when something failed."""
    if any(p.action is Action.ERROR for p in plans):
        return EXIT_ERROR
    return 0 if all(p.action is Action.UNCHANGED for p in plans) else 1


def _install_crds(args: argparse.Namespace) -> int:
    logs.setup(parse_config({}).logging)
    kube = connect(args.kubeconfig, args.context)
    if kube is None:
        raise UsageError("no kubeconfig or in-cluster config found")
    crd = crds.install(kube, args.file)
    print(f"customresourcedefinition {crd['metadata']['name']} applied and established")
    return 0


def _lab(args: argparse.Namespace) -> int:
    try:
        from ssa_lab import run as lab
    except ModuleNotFoundError as exc:
        if exc.name != "ssa_lab":
            raise
        raise UsageError("the failure-mode lab is not installed here (it is not part of the "
                         "controller's image): install the project from its source tree") from exc
    parser = argparse.ArgumentParser(prog="ssa-controller lab", description=LAB_HELP)
    lab.add_arguments(parser)
    try:
        return lab.main(parser.parse_args(args.lab))
    except lab.ERRORS as exc:
        raise UsageError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "lab":
        args.lab = rest  # the lab's own arguments, parsed by the lab
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    command = {"run": _run, "diff": _diff, "install-crds": _install_crds,
               "lab": _lab}[args.command]
    try:
        return command(args)
    except (ConfigError, UsageError, ApiError, OSError, TimeoutError) as exc:
        print(f"ssa-controller: {' '.join(str(exc).split())}", file=sys.stderr)  # one line
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
