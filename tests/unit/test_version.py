"""Unit tests for ssa_controller.version: the revision is a checkout's own, or unknown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ssa_controller import version


def test_a_package_outside_a_checkout_has_no_revision(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(version.REVISION_ENV, raising=False)
    monkeypatch.setattr(version, "PACKAGE_DIR", tmp_path / "ssa_controller")
    (tmp_path / "ssa_controller").mkdir()
    assert version._revision() == version.UNKNOWN


def test_a_package_lying_inside_another_repository_has_not_its_revision(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A virtualenv inside some project's checkout: site-packages is no checkout of ours."""
    monkeypatch.delenv(version.REVISION_ENV, raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "other"], check=True)
    package = tmp_path / "venv" / "site-packages" / "ssa_controller"
    package.mkdir(parents=True)
    monkeypatch.setattr(version, "PACKAGE_DIR", package)
    assert version._revision() == version.UNKNOWN
    monkeypatch.setattr(version, "PACKAGE_DIR", tmp_path / "ssa_controller")
    (tmp_path / "ssa_controller").mkdir()
    assert len(version._revision()) == 12  # the checkout's own package


def test_the_revision_an_image_was_built_from_comes_from_its_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """manifests/Dockerfile sets $SSA_CONTROLLER_REVISION from its REVISION build argument;
    the installed package there is no checkout."""
    monkeypatch.setattr(version, "PACKAGE_DIR", tmp_path / "ssa_controller")
    monkeypatch.setenv(version.REVISION_ENV, "0123456789ab")
    assert version._revision() == "0123456789ab"
