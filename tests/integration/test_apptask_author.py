"""What an AppTask author can obtain (issue 26, items 1 and 2), against the real API server.

- The CRD bounds every list, map and string of the spec: the server refuses an oversized AppTask
  (422) before the controller sees it, and admits one at every bound.
- A spec the server admits but whose Deployment it refuses with a message longer than a
  condition holds (256 invalid env names: over 100 KB) still gets its status written, the
  message cut to 32768 bytes (before: the status patch failed for ever).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import CONTROLLER, apptask, condition, scoped, status_of

from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.kube import APPTASKS, ApiError, Kube
from ssa_controller.status import MESSAGE_LIMIT

AT_BOUNDS: dict[str, Any] = {
    "image": "r.example.com/" + "i" * 1010,
    "command": ["c" * 4096] * 128,
    "args": ["a" * 4096] + ["-v"] * 127,
    "env": [{"name": f"V{i:03}" + "n" * 252, "value": "v" * 4096 if i < 8 else "1"}
            for i in range(256)],
    "ports": [{"containerPort": 1000 + i, "name": f"p{i}"} for i in range(64)],
    "resources": {"requests": {f"example.com/r{i}": "1" for i in range(16)},
                  "limits": {"memory": "1" * 64}},
    "labels": {f"l{i}": "v" * 63 for i in range(64)},
    "annotations": {f"a{i}": "v" * 4096 for i in range(8)},
}
"""A spec at every bound of manifests/crd.yaml at once (8 long annotations and env values:
all 64 would pass the API server's 3 MB request limit)."""

BEYOND: dict[str, tuple[str, Any]] = {
    "image": ("image", "i" * 1025),
    "command": ("command", ["c"] * 129),
    "a command word": ("command", ["c" * 4097]),
    "args": ("args", ["a"] * 129),
    "an argument": ("args", ["a" * 4097]),
    "env": ("env", [{"name": f"V{i}"} for i in range(257)]),
    "an env name": ("env", [{"name": "n" * 257}]),
    "an env value": ("env", [{"name": "V", "value": "v" * 4097}]),
    "ports": ("ports", [{"containerPort": 1000 + i} for i in range(65)]),
    "requests": ("resources", {"requests": {f"example.com/r{i}": "1" for i in range(17)}}),
    "a limit": ("resources", {"limits": {"memory": "1" * 65}}),
    "labels": ("labels", {f"l{i}": "v" for i in range(65)}),
    "a label value": ("labels", {"l": "v" * 64}),
    "annotations": ("annotations", {f"a{i}": "v" for i in range(65)}),
    "an annotation": ("annotations", {"a": "v" * 4097}),
}


def create(kube: Kube, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    meta = obj["metadata"]
    return kube.create(APPTASKS.path(meta["namespace"]), obj,
                       {"dryRun": "All"} if dry_run else None)


def test_an_apptask_at_every_bound_is_admitted(admin: Kube, namespace: str) -> None:
    created = create(admin, apptask("at-bounds", namespace, **AT_BOUNDS), dry_run=True)
    assert len(created["spec"]["env"]) == 256


@pytest.mark.parametrize("what", sorted(BEYOND))
def test_an_apptask_beyond_a_bound_is_refused_by_the_server(admin: Kube, namespace: str,
                                                           what: str) -> None:
    field, value = BEYOND[what]
    with pytest.raises(ApiError) as refused:
        create(admin, apptask("beyond", namespace, **{field: value}))
    assert refused.value.status == 422, refused.value
    assert f"spec.{field}" in refused.value.message


def test_a_refusal_longer_than_a_condition_holds_is_written_cut(
        admin: Kube, controller, namespace: str, cluster: ControlPlane) -> None:
    """256 env names the Deployment's validation refuses: the server's 422 lists each (over
    100 KB); the status patch carrying it whole was refused (maxLength 32768) for ever."""
    env = [{"name": f"bad name {i:03} " + "x" * 240} for i in range(256)]
    create(admin, apptask("loud", namespace, env=env))
    mark = cluster.audit.mark()
    controller(scoped(namespace))
    status = poll_until(lambda: (s := status_of(admin, namespace, "loud")).get("phase") and s,
                        timeout=30, message="a status for the AppTask")
    synced = condition(status, "Synced")
    assert (status["phase"], synced["reason"]) == ("Invalid", "ApplyRejected")
    message = synced["message"].encode()
    assert len(message) == MESSAGE_LIMIT, len(message)
    assert message.startswith(b'Deployment.apps "loud" is invalid: ')
    status_writes = [e.code for e in cluster.audit.select(
        mark, user=CONTROLLER, resource="apptasks", subresource="status", namespace=namespace)]
    assert status_writes and all(code == 200 for code in status_writes), status_writes
