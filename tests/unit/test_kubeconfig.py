"""ssa_controller.client.kubeconfig's coupling to the `kubernetes` package: `_load` reads the
loader's internals (an exec plugin's certificate expiry, its files, whether it holds a token),
which the package may change in any release, so the installed version must be one it was
checked against (CHECKED_VERSIONS). Its behaviour is tested in test_kube.py (kubeconfig tokens,
basic auth, proxy-url, tls-server-name, exec plugin tokens and certificates)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from ssa_controller.client import kubeconfig
from ssa_controller.client.kubeconfig import CHECKED_VERSIONS


def unchecked(installed: str) -> str | None:
    """Why `installed` (a kubernetes package version) is not one CHECKED_VERSIONS covers, or
    None."""
    (low_major, low_minor), (high_major, high_minor) = CHECKED_VERSIONS
    major, minor = (int(part) for part in installed.split(".")[:2])
    if (low_major, low_minor) <= (major, minor) < (high_major, high_minor):
        return None
    return (f"kubernetes {installed} is installed, but ssa_controller/client/kubeconfig.py's "
            f"_load was checked against {low_major}.{low_minor} up to (not including) "
            f"{high_major}.{high_minor} only: it reads the package loader's internals "
            "(KubeConfigLoader's expiry, cert_file, key_file and token; KubeConfigMerger; "
            "EXPIRY_SKEW_PREVENTION_DELAY). Check them in the new version's "
            "kubernetes/config/kube_config.py, run tests/unit/test_kube.py, then widen "
            "CHECKED_VERSIONS (and pyproject.toml's requirement)")


def test_the_installed_kubernetes_package_is_a_checked_version() -> None:
    reason = unchecked(version("kubernetes"))
    assert reason is None, reason


@pytest.mark.parametrize(("installed", "covered"), [
    ("37.0.3", True), ("37.1.0", True), ("38.0.0", False), ("36.9.1", False),
    ("37.0.0a1", True),
])
def test_a_version_outside_the_range_is_named_with_what_to_do(installed: str,
                                                             covered: bool) -> None:
    reason = unchecked(installed)
    assert (reason is None) == covered
    if not covered:
        assert reason is not None and f"kubernetes {installed} is installed" in reason
        assert "widen CHECKED_VERSIONS" in reason


def test_only_the_kubeconfig_module_reaches_into_the_loader() -> None:
    """The coupling stays in one function: no other client module names the loader."""
    client = Path(kubeconfig.__file__).parent
    naming = sorted(path.name for path in client.glob("*.py")
                    if "KubeConfigLoader" in path.read_text())
    assert naming == ["kubeconfig.py"]
