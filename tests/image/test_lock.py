"""The image's lock files are current and complete: manifests/requirements.txt pins every runtime
dependency of pyproject.toml (and nothing of the test extras), manifests/build-requirements.txt
the build backend, each at a version the specifier admits and with hashes, as
`pip install --require-hashes` in manifests/Dockerfile needs. Not marked: part of the default
run. After a change of dependencies, regenerate them with the commands in their headers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from lockfile import normalized, pins, requirements
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME_LOCK = ROOT / "manifests" / "requirements.txt"
BUILD_LOCK = ROOT / "manifests" / "build-requirements.txt"


@pytest.mark.parametrize(("lock", "declared"), [
    (RUNTIME_LOCK, PYPROJECT["project"]["dependencies"]),
    (BUILD_LOCK, PYPROJECT["build-system"]["requires"]),
])
def test_every_declared_requirement_is_pinned_where_its_specifier_admits(
        lock: Path, declared: list[str]) -> None:
    pinned = pins(lock)
    for text in declared:
        requirement = Requirement(text)
        name = normalized(requirement.name)
        assert name in pinned, f"{lock.name} does not pin {requirement.name}: regenerate it"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock.name} pins {name}=={pinned[name]}, outside {requirement.specifier}")


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, BUILD_LOCK])
def test_every_pin_has_hashes_and_nothing_else_is_installed(lock: Path) -> None:
    found = requirements(lock)
    assert found and len(found) == len(pins(lock))
    for words in found:
        assert "==" in words[0] and not words[0].startswith("-"), words
        assert len(words) > 1 and all(w.startswith("--hash=sha256:") for w in words[1:]), words


def test_the_test_extras_stay_out_of_the_image() -> None:
    extras = {normalized(Requirement(text).name)
              for group in PYPROJECT["project"]["optional-dependencies"].values()
              for text in group}
    assert not extras & set(pins(RUNTIME_LOCK))
