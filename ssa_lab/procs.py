"""The controllers under test as processes: a bad one (`python -m ssa_lab.bad.X`) or
this one (`python -m ssa_controller run` with a config scoped to the lab namespace), each with
its log file; and what /proc says about a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import urllib3
import yaml

from ssa_controller.envtest.controlplane import die_with_parent
from ssa_controller.envtest.polling import poll_until

from .bad import MODULES

READY_TIMEOUT = 90.0


class ControllerFailed(RuntimeError):
    """A controller under test exited before it was ready."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ControllerProcess:
    """One controller process; `stop()` always reaps it."""

    def __init__(self, argv: list[str], log_path: Path, ready_probe: Any) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self._ready_probe = ready_probe
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent(os.getpid()))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            if not self.alive():
                raise ControllerFailed(f"{self.log_path.stem} exited with {self.proc.returncode}; "
                                   f"log {self.log_path}:\n{self.tail()}")
            return bool(self._ready_probe())
        poll_until(ready, timeout=timeout, interval=0.1, message=f"{self.log_path.stem} ready",
                   ignore=(urllib3.exceptions.HTTPError, OSError))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease release, whatever was in flight is cut."""
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def bad(mode: str, kubeconfig: Path, namespace: str, workdir: Path,
        replica: int = 1) -> ControllerProcess:
    """Start the deliberately bad controller of `mode`."""
    ready_file = workdir / f"bad-{mode}-{replica}.ready"
    ready_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", f"ssa_lab.bad.{MODULES[mode]}",
            "--kubeconfig", str(kubeconfig), "--namespace", namespace,
            "--ready-file", str(ready_file)]
    return ControllerProcess(argv, workdir / f"bad-{mode}-{replica}.log", ready_file.exists)


def ours(kubeconfig: Path, namespace: str, workdir: Path, *, replica: int = 1,
         leader_election: bool = False, lease: str = "lab") -> ControllerProcess:
    """Start this controller with its default configuration, scoped to `namespace` (the lease,
    when elected, lives there too); metrics off, health on a free loopback port."""
    health = _free_port()
    config: dict[str, Any] = {
        "namespaces": [namespace],
        "leaderElection": {"enabled": leader_election, "namespace": namespace,
                           "leaseName": lease},
        "server": {"bindAddress": "127.0.0.1", "metricsPort": 0, "healthPort": health},
    }
    path = workdir / f"ours-{namespace}-{replica}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "ssa_controller", "run", "--config", str(path),
            "--kubeconfig", str(kubeconfig)]
    http = urllib3.PoolManager(retries=False, timeout=2.0)

    def probe() -> bool:
        return http.request("GET", f"http://127.0.0.1:{health}/readyz").status == 200

    return ControllerProcess(argv, workdir / f"ours-{namespace}-{replica}.log", probe)


def usage(pid: int) -> tuple[int, int]:
    """(RSS in KiB, threads) of a live process, from /proc/PID/status."""
    fields = dict(line.split(":", 1)
                  for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["Threads"])
