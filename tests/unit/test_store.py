"""Unit tests for ssa_controller.store: the in-memory cache of one resource."""

from __future__ import annotations

from typing import Any

from ssa_controller import fieldset
from ssa_controller.store import OWNERS_KEY, Store, key_of, strip, strip_keep_owners

Obj = dict[str, Any]
MANAGED_FIELDS = [
    {"manager": "ssa-controller", "operation": "Apply", "apiVersion": "apps/v1",
     "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
     "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
     "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
     "fieldsV1": {"f:status": {"f:replicas": {}}}},
]


def obj(name: str = "web", namespace: str = "demo", rv: str = "10", uid: str = "u-1",
        **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": uid,
                         "resourceVersion": rv, "managedFields": MANAGED_FIELDS},
            "spec": spec}


def names(store: Store) -> list[str]:
    return sorted(store.keys())


# --------------------------------------------------------------------------- basics


def test_key_of_is_namespace_slash_name() -> None:
    assert key_of(obj()) == "demo/web"
    assert key_of({"metadata": {"name": "cluster-wide"}}) == "/cluster-wide"


def test_put_get_keys_and_delete() -> None:
    store = Store()
    store.put(obj("a"))
    store.put(obj("b"))
    assert names(store) == ["demo/a", "demo/b"]
    assert len(store) == 2
    assert store.get("demo/a")["metadata"]["name"] == "a"
    assert store.get("demo/missing") is None
    old, new = store.delete(obj("a"))
    assert old is not None and old["metadata"]["name"] == "a"
    assert new is None
    assert names(store) == ["demo/b"]


def test_deleting_an_unknown_object_changes_nothing() -> None:
    assert Store().delete(obj()) == (None, None)


def test_put_returns_the_cached_object_before_and_after() -> None:
    store = Store()
    first = store.put(obj(rv="10", replicas=1))
    second = store.put(obj(rv="11", replicas=2))
    assert first[0] is None and first[1]["spec"] == {"replicas": 1}
    assert second[0] == first[1]
    assert second[1]["spec"] == {"replicas": 2}


def test_managed_fields_are_not_cached() -> None:
    store = Store()
    store.put(obj())
    cached = store.get("demo/web")
    assert "managedFields" not in cached["metadata"]
    assert cached["metadata"]["resourceVersion"] == "10"
    assert OWNERS_KEY not in cached


def test_strip_keeps_everything_but_managed_fields() -> None:
    original = obj(replicas=2)
    stripped = strip(original)
    assert stripped == {**original, "metadata": {
        k: v for k, v in original["metadata"].items() if k != "managedFields"}}


def test_strip_keep_owners_adds_the_ownership_summary() -> None:
    store = Store(transform=strip_keep_owners)
    store.put(obj())
    cached = store.get("demo/web")
    assert "managedFields" not in cached["metadata"]
    assert cached[OWNERS_KEY] == fieldset.owners(MANAGED_FIELDS)
    assert cached[OWNERS_KEY] == {("ssa-controller", "Apply"): {("f:spec", "f:replicas")}}


# --------------------------------------------------------------------------- ordering


def test_put_ignores_an_older_version_of_the_same_object() -> None:
    store = Store()
    store.put(obj(rv="12", replicas=3))
    cached = store.get("demo/web")
    assert store.put(obj(rv="11", replicas=2)) == (cached, cached)
    assert store.get("demo/web")["spec"] == {"replicas": 3}


def test_put_takes_a_re_created_object_whatever_its_resource_version() -> None:
    store = Store()
    store.put(obj(rv="12", uid="u-1"))
    store.put(obj(rv="5", uid="u-2"))
    assert store.get("demo/web")["metadata"]["uid"] == "u-2"


def test_unparsable_resource_versions_never_count_as_older() -> None:
    store = Store()
    store.put(obj(rv="b", replicas=1))
    store.put(obj(rv="a", replicas=2))
    assert store.get("demo/web")["spec"] == {"replicas": 2}


def test_put_if_newer_stores_a_new_or_newer_object() -> None:
    store = Store()
    store.put_if_newer(obj(rv="10", replicas=1))
    assert store.get("demo/web")["spec"] == {"replicas": 1}
    store.put_if_newer(obj(rv="11", replicas=2))
    assert store.get("demo/web")["spec"] == {"replicas": 2}


def test_put_if_newer_keeps_a_cache_that_is_ahead() -> None:
    store = Store()
    store.put(obj(rv="12", replicas=3))
    store.put_if_newer(obj(rv="11", replicas=2))
    assert store.get("demo/web")["spec"] == {"replicas": 3}


def test_put_if_newer_strips_like_put() -> None:
    store = Store(transform=strip_keep_owners)
    store.put_if_newer(obj())
    cached = store.get("demo/web")
    assert "managedFields" not in cached["metadata"] and OWNERS_KEY in cached


# --------------------------------------------------------------------------- replace


def test_replace_reports_listed_and_vanished_objects() -> None:
    store = Store()
    store.put(obj("kept", rv="1", replicas=1))
    store.put(obj("gone", rv="2"))
    changes = store.replace([obj("kept", rv="3", replicas=2), obj("new", rv="4")])
    by_key = {key_of(new or old): (old, new) for old, new in changes}
    assert set(by_key) == {"demo/kept", "demo/gone", "demo/new"}
    old, new = by_key["demo/kept"]
    assert (old["spec"], new["spec"]) == ({"replicas": 1}, {"replicas": 2})
    assert by_key["demo/gone"][1] is None
    assert by_key["demo/new"][0] is None
    assert names(store) == ["demo/kept", "demo/new"]
    assert "managedFields" not in store.get("demo/new")["metadata"]


def test_replace_in_a_namespace_leaves_other_namespaces_alone() -> None:
    store = Store()
    store.put(obj("a", namespace="demo"))
    store.put(obj("b", namespace="demo"))
    store.put(obj("a", namespace="demo2"))
    store.put(obj("a", namespace="other"))
    changes = store.replace([obj("a", namespace="demo", rv="20")], namespace="demo")
    assert sorted((key_of(new or old), new is None) for old, new in changes) == [
        ("demo/a", False), ("demo/b", True)]
    assert names(store) == ["demo/a", "demo2/a", "other/a"]


def test_replace_of_everything_with_nothing_empties_the_store() -> None:
    store = Store()
    store.put(obj("a", namespace="demo"))
    store.put(obj("a", namespace="other"))
    assert len(store.replace([])) == 2
    assert len(store) == 0
