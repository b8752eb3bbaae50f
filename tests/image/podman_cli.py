"""podman as the image tests drive it: every call bounded by a deadline, failures raised with
podman's own words.

What this machine's kind needs (../shared/docs/containers.md in the steering repository): the
runc runtime (crun cannot set up cgroups here) and resource limits no higher than the hard
limits (podman raises nofile and nproc for root by default, which the kernel refuses without
CAP_SYS_RESOURCE).
"""

from __future__ import annotations

import json
import resource
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INSTALL = ("podman not found: apt-get install podman runc mmdebstrap "
           "(bash .ci/setup installs them and makes the base image)")
STAND_IN_BASE = "docker.io/library/debian:bookworm-slim"
"""What .ci/setup imports from `mmdebstrap --variant=minbase bookworm` (keep the two equal): the
builds here use it for the Dockerfile's BASE_IMAGE, since no registry can be reached."""
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
"""The host's CA bundle: pip inside a build trusts it (its own bundle may lack a proxy's CA)."""
COMMAND_TIMEOUT = 60.0
LIMITS = {"nofile": (resource.RLIMIT_NOFILE, 1 << 20), "nproc": (resource.RLIMIT_NPROC, 4096)}
"""Each limit's ceiling: the hard limit of this process, and at most this (podman lowers its
own nproc, which runc then cannot raise back to the host's hard limit)."""


class PodmanError(RuntimeError):
    """podman failed; the message ends with what it printed."""


def ulimits() -> list[str]:
    """--ulimit arguments that podman may set: the ceilings of LIMITS."""
    args = []
    for name, (which, cap) in LIMITS.items():
        hard = resource.getrlimit(which)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        args += ["--ulimit", f"{name}={value}:{value}"]
    return args


class Podman:
    """The `podman` command with the runtime and limits this machine needs."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    @classmethod
    def find(cls) -> Podman | None:
        found = shutil.which("podman")
        return None if found is None else cls(found)

    def __call__(self, *args: str, timeout: float = COMMAND_TIMEOUT,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.executable, "--runtime", "runc", *args], capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args[:2])} exited with {done.returncode}: "
                              f"{(done.stderr or done.stdout)[-3000:]}")
        return done

    def image_exists(self, name: str) -> bool:
        return self("image", "exists", name, check=False).returncode == 0

    def build(self, context: Path, dockerfile: Path, tag: str, build_args: dict[str, str],
              workdir: Path, timeout: float) -> None:
        """Build from `context` as `docker build -f dockerfile context` would, with the host's
        network and CA (for apt and pip inside RUN), never pulling; the log in workdir."""
        mounts = []
        if HOST_CA.is_file():
            pip_conf = workdir / "pip.conf"
            pip_conf.write_text("[global]\ncert = /run/host-ca.crt\n")
            mounts = ["--volume", f"{HOST_CA}:/run/host-ca.crt:ro",
                      "--volume", f"{pip_conf}:/etc/pip.conf:ro"]
        arguments = [item for name, value in build_args.items()
                     for item in ("--build-arg", f"{name}={value}")]
        done = self("build", "--pull=never", "--network", "host", *ulimits(), *mounts,
                    *arguments, "--file", str(dockerfile), "--tag", tag, str(context),
                    timeout=timeout, check=False)
        (workdir / "build.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise PodmanError(f"podman build exited with {done.returncode} (log: "
                              f"{workdir / 'build.log'}): {(done.stdout + done.stderr)[-3000:]}")

    def run(self, args: Sequence[str]) -> str:
        """Start a container in the background (`podman run -d ARGS`); its id."""
        return self("run", "--detach", "--pull=never", *ulimits(), *args).stdout.strip()

    def once(self, image: str, args: Sequence[str], options: Sequence[str] = (),
             timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run `image` with `args` once in the foreground, root filesystem read-only (`options`
        go before the image: --user, --entrypoint...), then remove the container, whether it
        ended or its deadline passed."""
        name = f"ssa-controller-once-{secrets.token_hex(4)}"
        try:
            return self("run", "--rm", "--name", name, "--pull=never", "--read-only",
                        *ulimits(), *options, image, *args, timeout=timeout, check=False)
        finally:
            self.remove(name)

    def inspect(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self("inspect", name).stdout)
        return found[0]

    def running(self, name: str) -> bool:
        return bool(self.inspect(name)["State"]["Running"])

    def diff(self, name: str) -> dict[str, str]:
        """What the container changed in its root filesystem: {path: "A"|"C"|"D"}."""
        changes = json.loads(self("diff", "--format", "json", name).stdout) or {}
        return {path: kind[0].upper() for kind, paths in changes.items() for path in paths or ()}

    def logs(self, name: str) -> str:
        done = self("logs", name, check=False)
        return done.stdout + done.stderr

    def remove(self, *names: str) -> None:
        """Remove the containers whatever their state (missing ones too)."""
        if names:
            self("rm", "--force", "--ignore", "--time", "0", *names)
