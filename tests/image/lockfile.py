"""The pins of a pip-compile lock file (manifests/requirements.txt, build-requirements.txt)."""

from __future__ import annotations

import re
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """{normalized name: version} of every `name==version` line."""
    return {normalized(name): version for name, version in _PIN.findall(path.read_text())}


def requirements(path: Path) -> list[list[str]]:
    """Each requirement with its continuation lines, as pip reads them (comments left out)."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    return [line.split() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
