"""Command line for the local control plane.

python -m ssa_controller.envtest install   # find or build the binaries; last line: their folder
python -m ssa_controller.envtest start     # run a control plane until Ctrl-C; prints kubeconfigs
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .assets import DEFAULT_VERSION, AssetsError, install
from .controlplane import (
    ADMIN_USER,
    CONTROLLER_MANAGER_USER,
    POD_SIMULATOR_USER,
    ControlPlane,
    ControlPlaneError,
)
from .podsim import PodSimulator


def _install(args: argparse.Namespace) -> int:
    assets = install(args.version, log=lambda line: print(line, flush=True))
    print(assets.folder, flush=True)
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _start(args: argparse.Namespace) -> int:
    assets = install(args.version, log=lambda line: print(line, flush=True))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with ControlPlane(
        args.workdir, controller_manager=not args.no_controller_manager, assets=assets
    ) as plane:
        simulator = PodSimulator(plane.url, plane.token(POD_SIMULATOR_USER), str(plane.ca_file))
        if not args.no_controller_manager:
            simulator.start()
        try:
            print(f"kube-apiserver {plane.url} (workdir {plane.workdir})")
            for user in plane.users:
                if user not in (ADMIN_USER, CONTROLLER_MANAGER_USER, POD_SIMULATOR_USER):
                    print(f"kubeconfig for {user}: {plane.write_kubeconfig(user)}")
            print(f"admin kubeconfig: {plane.kubeconfig}")
            print(
                f"export KUBECONFIG={plane.kubeconfig}   # Ctrl-C stops the control plane",
                flush=True,
            )
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
        finally:
            simulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssa_controller.envtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", default=DEFAULT_VERSION, help="Kubernetes version (default %(default)s)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="find or build the binaries; print their folder last")
    start = commands.add_parser("start", help="run a control plane until Ctrl-C")
    start.add_argument(
        "--workdir", type=Path, default=None, help="folder for certs, logs, kubeconfigs"
    )
    start.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="only etcd + kube-apiserver (no Deployments -> Pods, no pod simulator)",
    )
    args = parser.parse_args(argv)
    try:
        return _install(args) if args.command == "install" else _start(args)
    except (AssetsError, ControlPlaneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
