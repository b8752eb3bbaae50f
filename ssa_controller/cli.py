"""The command line: `ssa-controller run | diff | install-crds | lab`: its parser, the client
each command connects with, and the commands. The failure-mode lab is a package of its own
(ssa_lab: not in the runtime package nor the image, its bad controllers are wrong on purpose),
loaded by the `lab` command only, which parses its own arguments."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import crds, logs, version
from .apptask.diff import DIFFERS, Action, Plan, render_text
from .client.credentials import CredentialsError
from .client.kube import Kube
from .client.pools import BUILTIN
from .client.wire import ApiError
from .reconciler import Result
from .runner import Process
from .runtime.objectkey import ObjectKey
from .serving.httpserver import ListenError
from .settings.config import Config, ConfigError, load_config, parse_config

log = logging.getLogger("ssa_controller")
EXIT_ERROR = 2
DESCRIPTION = ("A Kubernetes controller that reconciles AppTask custom resources "
               "(apptasks.example.com/v1) into Deployments by server-side apply.")
CONFIG_HELP = "controller.yaml (default: all defaults; see config/controller.yaml)"
SHOW_VALUES_HELP = ("show env values in dry-run changes (masked as *** by default; config: "
                    "showValues)")
ALL_INTERFACES = "0.0.0.0"
TRUE, FALSE = ("1", "t", "true"), ("0", "f", "false")
"""The spellings Go's flag package takes for a bool flag's value (any case)."""
LAB_HELP = ("the failure-mode lab: deliberately bad controllers beside this one, measured (exit "
            "1: not as expected)")


class UsageError(Exception):
    """The command line cannot be carried out as given."""


class _PrintVersion(argparse.Action):
    """--version: print the build (version.build_info) and exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version.build_info())
        parser.exit()


def bind_address(text: str) -> tuple[str | None, int]:
    """(host, port) from controller-runtime's HOST:PORT: `:PORT` is every interface, `[::1]:PORT`
    an IPv6 address, `0` disables (no host)."""
    if text == "0":
        return None, 0
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not port.isdigit() or int(port) > 65535 or "[" in host or "]" in host:
        raise argparse.ArgumentTypeError(
            "must be host:port with a port 0..65535 (for example :8080 or 127.0.0.1:8080), "
            f"or 0 to disable, got {text!r}")
    return host or ALL_INTERFACES, int(port)


def boolean(text: str) -> bool:
    """A bool flag's value, as Go's flag package reads it (--leader-elect=false)."""
    if text.lower() in TRUE + FALSE:
        return text.lower() in TRUE
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def _connection(command: argparse.ArgumentParser) -> None:
    command.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                         "in-cluster config, ~/.kube/config)")
    command.add_argument("--context", help="kubeconfig context (default: its current context)")


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run the controller", description=(
        "Run the controller until SIGTERM or SIGINT. Flags override the --config file, which "
        "overrides the defaults."))
    run.add_argument("--config", help=CONFIG_HELP)
    _connection(run)
    run.add_argument("--local", action="store_true", help=(
        "start a local control plane (etcd, kube-apiserver, kube-controller-manager, a pod "
        "simulator) with the CRD and the samples of config/samples/, and run on it (never on a "
        "kubeconfig's cluster); Ctrl-C stops everything"))
    run.add_argument("--once", action="store_true", help="one full pass, then exit (0, or 1 if "
                     "a reconcile failed)")
    run.add_argument("--dry-run", action="store_true", help="send every write with dryRun=All "
                     "(config: dryRun)")
    run.add_argument("--show-values", action="store_true", help=SHOW_VALUES_HELP)
    run.add_argument("--metrics-bind-address", type=bind_address, metavar="HOST:PORT", help=(
        "where /metrics listens (config: server.metricsHost and server.metricsPort); "
        ":PORT for every interface, 0 to disable"))
    run.add_argument("--health-probe-bind-address", type=bind_address, metavar="HOST:PORT",
                     help="where /healthz and /readyz listen (config: server.healthHost and "
                     "server.healthPort); :PORT for every interface, 0 to disable")
    run.add_argument("--leader-elect", type=boolean, nargs="?", const=True, metavar="BOOL",
                     help="take part in leader election, or not with --leader-elect=false "
                     "(config: leaderElection.enabled)")


def _add_diff(sub: Any) -> None:
    diff = sub.add_parser("diff", help="print what a run would change (exit 0: nothing, "
                          "1: changes or conflicts, 2: error)", description=(
                              "One dry-run pass over every AppTask: each one's verdict and the "
                              "patch a run would make. Exit 0 when every Deployment matches "
                              "its spec, 1 when one differs or cannot be brought to it, 2 on "
                              "an error."))
    diff.add_argument("--config", help=CONFIG_HELP)
    _connection(diff)
    diff.add_argument("-n", "--namespace", help="only this namespace")
    diff.add_argument("-o", "--output", choices=("text", "json"), default="text",
                      help="text (default) or json: a list of {key, action, whenUnpaused, "
                      "patch, detail}")
    diff.add_argument("--show-values", action="store_true", help=SHOW_VALUES_HELP)


def _add_install_crds(sub: Any) -> None:
    install = sub.add_parser("install-crds", help="install or upgrade the AppTask CRD",
                             description="Server-side apply the AppTask CRD and wait until it "
                             "is Established.")
    _connection(install)
    install.add_argument("--file", type=Path, help="CRD manifest (default: manifests/crd.yaml)")


def _add_lab(sub: Any) -> None:
    sub.add_parser("lab", add_help=False, help=f"{LAB_HELP}; see lab --help", description=(
        "The failure-mode lab (docs/lab.md): its options are its own, "
        "`ssa-controller lab --help` lists them."))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssa-controller", description=DESCRIPTION)
    parser.add_argument("--version", action=_PrintVersion,
                        help="print the release, git revision and Python version, then exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_diff, _add_install_crds, _add_lab):
        add(sub)
    return parser


def _config(path: str | None, overrides: Mapping[str, Any]) -> Config:
    """The --config file (or the defaults) with the command line's `overrides` over it."""
    config = load_config(path) if path else parse_config({})
    return config.with_overrides(overrides) if overrides else config


def run_config(args: argparse.Namespace) -> Config:
    """The configuration of `run`: its flags over the --config file over the defaults."""
    server: dict[str, Any] = {}
    for name, flag in (("metrics", args.metrics_bind_address),
                       ("health", args.health_probe_bind_address)):
        if flag is not None:
            host, server[f"{name}Port"] = flag
            if host is not None:
                server[f"{name}Host"] = host
    overrides: dict[str, Any] = {"server": server} if server else {}
    if args.leader_elect is not None:
        overrides["leaderElection"] = {"enabled": args.leader_elect}
    if args.dry_run:
        overrides["dryRun"] = True
    if args.show_values:
        overrides["showValues"] = True
    if args.once:  # one pass over every AppTask, not a shard's share
        overrides["sharding"] = {"enabled": False}
    return _config(args.config, overrides)


def connect(kubeconfig: str | None, context: str | None,
            transport: str = BUILTIN) -> Kube | None:
    """A client from the usual places, in controller-runtime's order (--kubeconfig, $KUBECONFIG,
    in-cluster service account, ~/.kube/config), or None if none, its requests carried by
    `transport` (client.transport). Credentials found but not usable (an absent kubeconfig, an
    unsupported field) are a UsageError naming the problem."""
    try:
        if kubeconfig or os.environ.get("KUBECONFIG"):
            return Kube.from_kubeconfig(kubeconfig, context, transport=transport)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return Kube.in_cluster(transport=transport)
        if (Path.home() / ".kube" / "config").is_file():
            return Kube.from_kubeconfig(None, context, transport=transport)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from exc
    return None


@contextlib.contextmanager
def _connected(args: argparse.Namespace, config: Config) -> Iterator[Kube]:
    """With --local, a client of a local control plane started for the command (whatever
    kubeconfig exists); else one from the usual places (see connect)."""
    if getattr(args, "local", False):
        if args.kubeconfig or args.context:
            raise UsageError("--local runs on a control plane of its own: it takes no "
                             "--kubeconfig or --context")
        from . import local
        try:
            samples = local.samples()
        except local.SampleError as exc:
            raise UsageError(str(exc)) from exc
        namespaces = ((config.leader_election.namespace,) if config.leader_election.enabled
                      else ())
        with local.cluster(namespaces, samples) as kubeconfig:
            plane = Kube.from_kubeconfig(str(kubeconfig), transport=config.client.transport)
            plane.origin = "the local control plane"
            yield plane
        return
    kube = connect(args.kubeconfig, args.context, config.client.transport)
    if kube is None:
        hint = ", or --local for a local control plane" if hasattr(args, "local") else ""
        raise UsageError(f"no kubeconfig or in-cluster config found (use --kubeconfig{hint})")
    yield kube


@contextlib.contextmanager
def _client(args: argparse.Namespace, config: Config) -> Iterator[Kube]:
    """The command's client (see _connected); says, once, which build talks to which server
    with which credentials; a 401 that ends the command says which credentials were refused."""
    with _connected(args, config) as kube:
        log.info("%s; API server %s (%s)", version.build_info(), kube.server, kube.origin)
        try:
            yield kube
        except ApiError as exc:
            if exc.status != 401:
                raise
            raise UsageError(
                f"the API server at {kube.server} refused the credentials of {kube.origin} "
                "(401 Unauthorized): check that its token or client certificate is current "
                "(not expired or revoked) and meant for this server") from exc


def _run(args: argparse.Namespace) -> int:
    config = run_config(args)
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
        results = list(process.controller.run_once().values())
    finally:
        process.events.stop(timeout=10.0)
    failed = [r for r in results if r.error is not None]
    log.info("one pass over %d AppTasks: %d failed", len(results), len(failed))
    return 1 if failed else 0


def _diff(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"dryRun": True}
    if args.namespace:
        overrides["namespaces"] = [args.namespace]
    if args.show_values:
        overrides["showValues"] = True
    config = _config(args.config, overrides)
    logs.setup(config.logging)
    with _client(args, config) as kube:
        plans = diff_plans(Process(config, kube).controller.run_once())
    shown = [p.shown(config.show_values) for p in plans]
    print(json.dumps([p.as_dict() for p in shown], indent=2) if args.output == "json"
          else render_text(shown))
    return diff_exit_code(plans)


def diff_plans(results: Mapping[ObjectKey, Result]) -> list[Plan]:
    """A plan for every AppTask of a dry-run pass (a reconcile that crashed has none, and is an
    error), and one for its Service where it has one or one is to be deleted."""
    plans = []
    for key, result in results.items():
        plans.append(result.plan or Plan(str(key), Action.ERROR, detail=str(result.error)))
        if result.service_plan is not None:
            plans.append(result.service_plan)
    return plans


def diff_exit_code(plans: list[Plan]) -> int:
    """2 when an AppTask could not be checked (error); else 1 when a Deployment or a Service
    differs from its spec or cannot be brought to it (created, configured, deleted, conflict,
    invalid; for a paused AppTask, once unpaused); else 0."""
    verdicts = {p.verdict for p in plans}
    if Action.ERROR in verdicts:
        return EXIT_ERROR
    return 1 if verdicts & DIFFERS else 0


def _install_crds(args: argparse.Namespace) -> int:
    config = parse_config({})
    logs.setup(config.logging)
    with _client(args, config) as kube:
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
    except (ConfigError, UsageError, ListenError, ApiError, OSError, TimeoutError) as exc:
        print(f"ssa-controller: {' '.join(str(exc).split())}", file=sys.stderr)  # one line
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
