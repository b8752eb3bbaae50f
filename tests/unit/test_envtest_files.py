"""The local control plane's secret files are for its user only (issue 26.7): tokens.csv holds
system:masters tokens, sa.key signs every service-account token, kubeconfigs carry tokens. No
process is started here: only the files a start writes first."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssa_controller.envtest import ControlPlane


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # files 0644, folders 0755 unless made otherwise
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_a_given_work_folder_and_the_secrets_in_it_are_private(tmp_path: Path) -> None:
    given = tmp_path / "work"
    given.mkdir(mode=0o755)
    plane = ControlPlane(given)
    plane._prepare_files()  # noqa: SLF001 - what start() writes before any process runs
    assert mode(given) == 0o700
    assert mode(given / "tokens.csv") == 0o600
    assert mode(given / "sa.key") == 0o600
    assert plane.admin_token in (given / "tokens.csv").read_text()
    plane.ca_file.write_text("the API server's certificate")  # written by kube-apiserver
    assert mode(plane.write_kubeconfig("alice", given / "kubeconfig-alice")) == 0o600


@pytest.mark.usefixtures("permissive_umask")
def test_a_work_folder_to_be_made_is_made_private(tmp_path: Path) -> None:
    ControlPlane(tmp_path / "new" / "work")._prepare_files()  # noqa: SLF001
    assert mode(tmp_path / "new" / "work") == 0o700
    assert mode(tmp_path / "new" / "work" / "tokens.csv") == 0o600
