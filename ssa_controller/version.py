"""What this program is: its release (the package's metadata), the git revision it was built
from ($SSA_CONTROLLER_REVISION, which the image sets from its REVISION build argument; else the
checkout's HEAD when its package is a checkout's: an editable install, a clone) and the Python
running it.
Shown by `--version`, logged at start, and exported as `ssa_controller_build_info`."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROGRAM = "ssa-controller"
UNKNOWN = "unknown"
PACKAGE_DIR = Path(__file__).resolve().parent
GIT_TIMEOUT = 5.0
REVISION_ENV = "SSA_CONTROLLER_REVISION"


@dataclass(frozen=True)
class BuildInfo:
    version: str
    revision: str
    python: str

    def __str__(self) -> str:
        return f"{PROGRAM} {self.version} (revision {self.revision}, python {self.python})"


def _version() -> str:
    try:
        return importlib.metadata.version(PROGRAM)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def _revision() -> str:
    """$SSA_CONTROLLER_REVISION (set in the image), else the checkout's HEAD if the package's
    folder is the top of a git work tree's package (and not a copy that happens to lie inside
    some other repository)."""
    if os.environ.get(REVISION_ENV):
        return os.environ[REVISION_ENV]
    try:
        answer = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "rev-parse", "--show-toplevel", "--short=12",
             "HEAD"], capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    lines = answer.stdout.split()
    if answer.returncode != 0 or len(lines) != 2 or Path(lines[0]) != PACKAGE_DIR.parent:
        return UNKNOWN
    return lines[1]


@functools.cache
def build_info() -> BuildInfo:
    """This program's build (git is asked once per process)."""
    return BuildInfo(_version(), _revision(), platform.python_version())
