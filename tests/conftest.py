"""Pytest fixtures for the local control plane (etcd + kube-apiserver + kube-controller-manager).

- `control_plane` (session): a ControlPlane with kube-controller-manager and the pod simulator,
  its kube-apiserver enforcing owner-reference permissions (OWNER_REFERENCE_ENFORCEMENT). When
  the binaries are missing the cluster tests are skipped with the reason, unless
  SSA_REQUIRE_CLUSTER is set (as .ci/run does): then they fail.
- `namespace` (function): a fresh namespace, ready for pods, deleted after the test.
- `poll_until`: the deadline-bounded polling helper (also importable from ssa_controller.envtest).
Every test under tests/integration is marked `cluster` automatically. Each phase's report is kept
on the item (`item.rep_call`), so a fixture can print its processes' logs after a failure.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ssa_controller.envtest import (
    POD_SIMULATOR_USER,
    ApiError,
    Assets,
    ControlPlane,
    PodSimulator,
    find_assets,
)
from ssa_controller.envtest import poll_until as _poll_until

INTEGRATION = Path(__file__).parent / "integration"
REQUIRE_CLUSTER = "SSA_REQUIRE_CLUSTER"
OWNER_REFERENCE_ENFORCEMENT = "--enable-admission-plugins=OwnerReferencesPermissionEnforcement"
"""The admission plugin of clusters (OpenShift's among them) that refuses blockOwnerDeletion on
an owner reference without `update` on the owner's finalizers, and a change of an existing
object's owner references without `delete` on it: so the tests prove the manifests' RBAC grants
both."""


OPT_IN_MARKERS = ("soak", "lab", "image", "sharding")
"""Suites of minutes (tests/soak, tests/lab, tests/image, tests/integration/test_sharding.py): left
out unless the marker expression names them (`pytest -m soak tests/soak`, `pytest -m lab
tests/lab`, `pytest -m image tests/image`, `pytest -m sharding tests/integration`, as .ci/run
does)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.cluster)
    markexpr = config.option.markexpr or ""
    left_out = [item for item in items
                if any(item.get_closest_marker(m) and m not in markexpr for m in OPT_IN_MARKERS)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


@pytest.fixture(scope="session")
def assets() -> Assets:
    """The envtest binaries; the cluster tests skip without them, or fail when
    SSA_REQUIRE_CLUSTER is set (as .ci/run does)."""
    found = find_assets()
    if found is None or found.kube_controller_manager is None:
        reason = (
            "no envtest binaries (etcd, kube-apiserver, kube-controller-manager): run "
            "`python -m ssa_controller.envtest install` or set KUBEBUILDER_ASSETS"
        )
        if os.environ.get(REQUIRE_CLUSTER):
            pytest.fail(f"{reason} ({REQUIRE_CLUSTER} is set)", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory, assets: Assets
                  ) -> Iterator[ControlPlane]:
    with ControlPlane(
        tmp_path_factory.mktemp("envtest"), controller_manager=True, assets=assets,
        apiserver_args=(OWNER_REFERENCE_ENFORCEMENT,)
    ) as plane:
        simulator = PodSimulator(plane.url, plane.token(POD_SIMULATOR_USER), str(plane.ca_file))
        simulator.start()
        try:
            yield plane
        finally:
            simulator.stop()


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:48].strip("-")
    return f"{stem or 'test'}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace whose default service account has its token (so pods can be created)."""
    name = _namespace_name(request.node.name)
    admin = control_plane.client()
    admin.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    _poll_until(
        lambda: admin.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").get("secrets"),
        timeout=30,
        message=f"service account token in namespace {name}",
        ignore=(ApiError,),
    )
    try:
        yield name
    finally:
        try:
            admin.delete(f"/api/v1/namespaces/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
        admin.close()


@pytest.fixture
def poll_until() -> Callable[..., Any]:
    return _poll_until


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each phase's report as item.rep_setup / rep_call / rep_teardown, for fixtures that print
    their processes' logs after a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
