"""Unit tests for the pod simulator's kubelet statuses (ssa_controller.envtest.podsim): pods run
and are ready, unless an image reference cannot be parsed, as the kubelet would find."""

from __future__ import annotations

from typing import Any

import pytest

from ssa_controller.client.wire import ApiError
from ssa_controller.envtest.podsim import PodSimulator, image_reference_error, pod_status


@pytest.mark.parametrize("image", [
    "nginx", "nginx:1.25", "library/nginx:latest", "docker.io/library/nginx:1.25",
    "localhost:5000/team/app:v1.2.3-rc_1", "registry.example.com/a/b/c",
    "nginx@sha256:" + "a" * 64, "ghcr.io/org/app:1.0@sha256:" + "0" * 64, "a__b", "a---b",
    "Registry.Example.com:443/app",
])
def test_references_the_kubelet_can_pull_are_valid(image: str) -> None:
    assert image_reference_error(image) is None


@pytest.mark.parametrize("image", [
    "nginx latest with spaces", "Nginx", "nginx:", ":1.25", "nginx::1", "nginx:-1",
    "nginx@sha256:abc", "-nginx", "nginx/", "/nginx", "a..b", "nginx:" + "t" * 129,
    "a" * 256, "", "ngïnx",
])
def test_references_that_do_not_parse_are_invalid_as_the_kubelet_says(image: str) -> None:
    error = image_reference_error(image)
    assert error is not None and error.startswith(
        f'Failed to apply default image tag "{image}": couldn\'t parse image reference '
        f'"{image}": ')


def pod(*images: str) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": f"c{i}", "image": image}
                                    for i, image in enumerate(images)]}}


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_a_pod_with_valid_images_runs_and_is_ready() -> None:
    status = pod_status(pod("nginx:1.25", "busybox"), "10.0.0.2")["status"]
    assert status["phase"] == "Running" and set(conditions(status).values()) == {"True"}
    assert [c["ready"] for c in status["containerStatuses"]] == [True, True]


def test_an_invalid_image_reference_leaves_its_pod_pending_and_not_ready() -> None:
    status = pod_status(pod("nginx:1.25", "nginx latest with spaces"), "10.0.0.2")["status"]
    assert status["phase"] == "Pending"
    assert conditions(status) == {"Initialized": "True", "Ready": "False",
                                  "ContainersReady": "False", "PodScheduled": "True"}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("ContainersNotReady",
                                                   "containers with unready status: [c1]")
    good, bad = status["containerStatuses"]
    assert good["ready"] and "running" in good["state"]
    assert not bad["ready"] and bad["state"]["waiting"]["reason"] == "InvalidImageName"
    assert bad["state"]["waiting"]["message"] == image_reference_error("nginx latest with spaces")


class ClosingNamespace:
    """A client whose server refuses every write: the pod's namespace is being deleted."""

    def create(self, path: str, body: Any) -> Any:
        raise ApiError(403, "Forbidden", f"{path} is forbidden: unable to create new content in "
                       "namespace demo because it is being terminated",
                       {"details": {"causes": [{"reason": "NamespaceTerminating"}]}})


def test_a_pod_of_a_namespace_being_deleted_is_left_to_go_with_it() -> None:
    simulator = PodSimulator("https://127.0.0.1:9", "token", None)
    simulator._client = ClosingNamespace()  # type: ignore[assignment]
    simulator._handle({"metadata": {"name": "web-1", "namespace": "demo", "uid": "u1"},
                       "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
    assert simulator._marked == set()  # nothing raised (no relist, no log line), nothing marked
