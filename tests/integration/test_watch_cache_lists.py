"""A shard's lists from the API server's watch cache, against the real kube-apiserver.

A sharded watcher (`Watcher(cached_lists=True)`) lists first at resourceVersion 0 and relists at
the last version it saw, without a limit, as client-go's reflector does, so that a relist never
shows an older version than the watcher had seen. These tests hold the server to the contract
that relies on (a list at a version without a limit comes from the watch cache and is not older
than that version; with a limit it is read from etcd at exactly that version; a version the
cache does not reach is refused with ResourceVersionTooLarge) and run the watcher through a
relist.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import apptask, put_apptask

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, ListOptions, ObjectList
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.runtime.store import Cached, Writer
from ssa_controller.runtime.watcher import Watcher, start_all, version_too_large


def version(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def test_what_the_server_answers_to_a_list_at_a_version(admin: Kube, namespace: str) -> None:
    path = APPTASKS.path(namespace)
    first = [put_apptask(admin, apptask(f"first-{i}", namespace)) for i in range(3)]
    then = version(first[-1])
    put_apptask(admin, apptask("later", namespace))

    # without a limit: the watch cache, not older than the version asked for
    cached = admin.list(path, {"resourceVersion": str(then)})
    assert version(cached) >= then
    assert {f"first-{i}" for i in range(3)} <= {o["metadata"]["name"] for o in cached["items"]}
    # with a limit: etcd, at exactly that version (why a relist at a version has no limit)
    exact = admin.list(path, {"resourceVersion": str(then), "limit": 500})
    assert version(exact) == then
    assert sorted(o["metadata"]["name"] for o in exact["items"]) == [f"first-{i}" for i in range(3)]
    # a version the cache does not reach within its wait (3 s on v1.20)
    with pytest.raises(ApiError) as refused:
        admin.list(path, {"resourceVersion": str(version(cached) + 1_000_000)})
    assert version_too_large(refused.value), refused.value.body


class RecordingKube(Kube):
    """The real client, keeping the parameters of every list it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lists: list[dict[str, Any]] = []

    def list(self, path: str, params: ListOptions | None = None) -> ObjectList:
        self.lists.append(dict(params or {}))
        return super().list(path, params)


@pytest.fixture
def kube(cluster: ControlPlane) -> Iterator[RecordingKube]:
    client = RecordingKube.from_kubeconfig(str(cluster.kubeconfig), user_agent="tests")
    assert isinstance(client, RecordingKube)
    yield client
    client.close()


def test_a_shard_watcher_relists_at_the_version_it_last_saw(
        admin: Kube, kube: RecordingKube, namespace: str) -> None:
    created = put_apptask(admin, apptask("a", namespace))
    fail_next = threading.Event()

    def on_change(old: Cached | None, new: Cached | None) -> None:
        if fail_next.is_set():  # an unexpected error in a handler: the watcher lists again
            fail_next.clear()
            raise RuntimeError("a handler failed")

    watcher = Watcher(kube, APPTASKS, Writer(), on_change, namespace=namespace,
                      cached_lists=True)
    stop = threading.Event()
    threads = start_all([watcher], stop)
    try:
        key = ObjectKey(namespace, "a")
        poll_until(lambda: watcher.writer.store.get(key), timeout=10, message="a listed")
        seen = put_apptask(admin, apptask("a", namespace, replicas=2))
        poll_until(lambda: version(watcher.writer.store.get(key) or created) == version(seen),
                   timeout=10, message="a's change watched")
        fail_next.set()
        changed = put_apptask(admin, apptask("a", namespace, replicas=3))
        poll_until(lambda: len(kube.lists) == 2, timeout=10, message="a relist")
        poll_until(lambda: version(watcher.writer.store.get(key) or created) == version(changed),
                   timeout=10, message="a's last change cached after the relist")
    finally:
        stop.set()
        watcher.interrupt()
        for thread in threads:
            thread.join(timeout=10)
    assert [(p.get("resourceVersion"), p.get("limit")) for p in kube.lists] == [
        ("0", 500), (str(version(seen)), None)]
