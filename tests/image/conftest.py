"""Fixtures of the image tests: podman, the image built from manifests/Dockerfile, a control plane
of their own with the manifests applied, and `pods`, which starts containers of the image as
manifests/deployment.yaml runs them (deployed.py, pod.py).

The tests marked `image` are left out of the default run (OPT_IN_MARKERS in tests/conftest.py):

    .venv/bin/python -m pytest -q -m image tests/image        # as .ci/run does

They need podman, runc and the stand-in base image that .ci/setup makes; without podman they fail
with one line saying what to install. The control plane is their own because the manifests' RBAC
is applied exactly as written here (the integration suite's binds its test users too). The built
image is removed after the session; the build's intermediate layers stay in podman's store as
the cache of the next build. Every container a test starts is removed after it, its log printed
when the test failed. tests/integration goes on sys.path here, for its helpers.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from deployed import (  # noqa: E402
    MANIFESTS,
    ROOT,
    Deployed,
    Image,
    Pod,
    apply,
    manifest,
    token,
)
from metrics_scrape import issue_certificate  # noqa: E402
from pod import file_volumes  # noqa: E402
from podman_cli import INSTALL, STAND_IN_BASE, Podman  # noqa: E402

from ssa_controller import crds  # noqa: E402
from ssa_controller.envtest import (  # noqa: E402
    POD_SIMULATOR_USER,
    Assets,
    ControlPlane,
    PodSimulator,
)

BUILD_TIMEOUT = 900.0
"""A build without cache on a busy 2-core machine: two apt-get installs and the locked wheels."""


@pytest.fixture(scope="session")
def podman() -> Podman:
    found = Podman.find()
    if found is None:
        pytest.fail(INSTALL, pytrace=False)
    if not found.image_exists(STAND_IN_BASE):
        pytest.fail(f"no base image {STAND_IN_BASE}: bash .ci/setup makes it (mmdebstrap)",
                    pytrace=False)
    return found


@pytest.fixture(scope="session")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The image of manifests/Dockerfile, built from the repository root with the stand-in base
    and the checkout's revision; removed after the session."""
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
    built = Image(f"localhost/ssa-controller-test:{secrets.token_hex(4)}", revision)
    podman.build(ROOT, MANIFESTS / "Dockerfile", built.tag,
                 {"BASE_IMAGE": STAND_IN_BASE, "REVISION": revision},
                 tmp_path_factory.mktemp("image-build"), timeout=BUILD_TIMEOUT)
    try:
        yield built
    finally:
        podman("rmi", "--force", built.tag, check=False)


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory, assets: Assets) -> Iterator[Deployed]:
    """A control plane of this suite's own (with kube-controller-manager and the pod simulator)
    where a cluster admin applied the CRD, the Namespace, ServiceAccount and RBAC of manifests/,
    manifests/monitoring's metrics-reader binding (its ServiceAccount created), and the metrics
    certificate's Secret as manifests/cert-manager has cert-manager issue it (a CA of the test's
    own, for the name the ServiceMonitor verifies)."""
    with ControlPlane(tmp_path_factory.mktemp("image-envtest"), controller_manager=True,
                      assets=assets) as plane:
        simulator = PodSimulator(plane.url, plane.token(POD_SIMULATOR_USER), str(plane.ca_file))
        simulator.start()
        admin = plane.client(user_agent="tests")
        try:
            crds.install(admin)
            apply(admin, [*manifest("00-namespace.yaml"), *manifest("serviceaccount.yaml"),
                          *manifest("rbac.yaml")])
            (binding,) = manifest("monitoring/metrics-reader-binding.yaml")
            (scraper,) = binding["subjects"]
            apply(admin, [{"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": scraper["namespace"]}},
                          {"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": scraper["name"],
                                        "namespace": scraper["namespace"]}},
                          binding])
            (configmap,) = manifest("configmap.yaml")
            (deployment,) = manifest("deployment.yaml")
            (monitor,) = manifest("monitoring/servicemonitor.yaml")
            server_name = monitor["spec"]["endpoints"][0]["tlsConfig"]["serverName"]
            certs = tmp_path_factory.mktemp("metrics-cert")
            ca = issue_certificate(certs, server_name)
            (secret,) = [name for kind, name in file_volumes(deployment).values()
                         if kind == "Secret"]
            apply(admin, [{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                           "metadata": {"name": secret, "namespace": configmap["metadata"][
                               "namespace"]},
                           "data": {f.name: base64.b64encode(f.read_bytes()).decode()
                                    for f in certs.iterdir()}}])
            yield Deployed(plane, admin, deployment, configmap,
                           token(admin, scraper["namespace"], scraper["name"]), ca, server_name)
        finally:
            admin.close()
            simulator.stop()


@pytest.fixture
def pods(podman: Podman, deployed: Deployed, image: Image, tmp_path: Path,
         request: pytest.FixtureRequest) -> Iterator[Callable[[], Pod]]:
    """start() -> a new running Pod; all are removed after the test (their logs printed if it
    failed)."""
    started: list[Pod] = []

    def start() -> Pod:
        workdir = tmp_path / f"pod-{len(started)}"
        workdir.mkdir()
        pod = Pod(podman, deployed, workdir)
        started.append(pod)
        pod.start(image)
        return pod

    yield start
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for pod in started:
            print(f"--- {pod.name} log ---\n{pod.log()[-6000:]}")
    podman.remove(*(pod.name for pod in started))
