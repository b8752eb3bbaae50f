"""Unit tests for ssa_controller.runtime.store: the in-memory cache of one resource."""

from __future__ import annotations

import json
from typing import Any

from ssa_controller.runtime import fieldset
from ssa_controller.runtime import store as store_module
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.runtime.store import Cached, Writer, compact

Obj = dict[str, Any]
WEB = ObjectKey("demo", "web")
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


def names(cache: Writer) -> list[str]:
    return sorted(str(key) for key in cache.store.keys())


# --------------------------------------------------------------------------- basics


def test_an_objects_key_is_its_namespace_and_name_shown_namespace_slash_name() -> None:
    assert ObjectKey.of(obj()) == WEB
    assert str(ObjectKey.of(obj())) == f"{ObjectKey.of(obj())}" == "demo/web"
    assert str(ObjectKey.of({"metadata": {"name": "cluster-wide"}})) == "/cluster-wide"


def test_put_get_keys_and_delete() -> None:
    cache = Writer()
    cache.put(obj("a"))
    cache.put(obj("b"))
    assert names(cache) == ["demo/a", "demo/b"]
    assert len(cache.store) == 2
    assert cache.store.get(ObjectKey("demo", "a"))["metadata"]["name"] == "a"
    assert cache.store.get(ObjectKey("demo", "missing")) is None
    old, new = cache.delete(obj("a"))
    assert old is not None and old.obj["metadata"]["name"] == "a"
    assert new is None
    assert names(cache) == ["demo/b"]


def public(thing: object) -> set[str]:
    return {name for name in dir(thing) if not name.startswith("_")}


def test_the_writer_is_the_watchs_the_view_reads_and_answers_only_record_writes() -> None:
    """kube-rs' reflector split: whoever holds the view (event handlers, gauges, reconciles)
    cannot change what the watch shows; a reconcile gets the one write it needs."""
    cache = Writer()
    assert public(cache) == {"put", "delete", "replace", "record", "store", "answers"}
    assert public(cache.store) == {"cached", "get", "keys", "pending_writes", "record"}
    assert public(cache.answers) == {"record_write"}


def test_deleting_an_unknown_object_changes_nothing() -> None:
    assert Writer().delete(obj()) == (None, None)


def test_put_returns_the_cached_object_before_and_after() -> None:
    cache = Writer()
    first = cache.put(obj(rv="10", replicas=1))
    second = cache.put(obj(rv="11", replicas=2))
    assert first[0] is None and first[1] is not None and first[1].obj["spec"] == {"replicas": 1}
    assert second[0] == first[1]
    assert second[1] is not None and second[1].obj["spec"] == {"replicas": 2}


def test_managed_fields_are_not_cached() -> None:
    cache = Writer()
    cache.put(obj())
    cached = cache.store.get(WEB)
    assert "managedFields" not in cached["metadata"]
    assert cached["metadata"]["resourceVersion"] == "10"
    assert cache.store.cached(WEB).owners == {}  # kept only by a store made with_owners


def listed(cache: Writer, *objs: dict[str, Any]) -> list[Cached]:
    """Objects as a list brings them, in the store's cached form."""
    return [cache.record(o) for o in objs]


def test_compact_keeps_everything_but_managed_fields() -> None:
    original = obj(replicas=2)
    stripped = compact(original)
    assert stripped == {**original, "metadata": {
        k: v for k, v in original["metadata"].items() if k != "managedFields"}}


def test_compact_shares_keys_and_short_strings_between_objects() -> None:
    def decoded(image: str) -> dict[str, Any]:  # each decode makes its own strings
        return json.loads(json.dumps({**obj(), "spec": {"image": image, "note": "x" * 100}}))

    one, two = compact(decoded("nginx:1.25")), compact(decoded("nginx:1.25"))
    assert one == two == compact(decoded("nginx:1.25"))
    assert one["spec"]["image"] is two["spec"]["image"]
    assert next(iter(one["spec"])) is next(iter(two["spec"]))
    assert one["spec"]["note"] is not two["spec"]["note"]  # long strings are left alone


def test_a_new_version_takes_the_unchanged_parts_of_the_one_before() -> None:
    def decoded(ready: int) -> dict[str, Any]:
        return json.loads(json.dumps({**obj(), "status": {"readyReplicas": ready,
                                                          "conditions": [{"type": "Ready"}]}}))

    cache = Writer()
    _, before = cache.put(decoded(1))
    _, after = cache.put(decoded(2))
    assert after is not None and before is not None
    assert after.obj == compact(decoded(2))
    assert after.obj["spec"] is before.obj["spec"]
    assert after.obj["status"]["conditions"] is before.obj["status"]["conditions"]
    assert after.obj["status"] is not before.obj["status"]
    assert after.obj["status"]["readyReplicas"] == 2


def test_the_ownership_summary_is_kept_beside_the_object() -> None:
    cache = Writer(with_owners=True)
    cache.put(obj())
    cached = cache.store.cached(WEB)
    assert cached is not None and cached.obj == compact(obj()) == cache.store.get(WEB)
    assert cached.owners == fieldset.owners(MANAGED_FIELDS)
    assert cached.owners == {("ssa-controller", "Apply"): {("f:spec", "f:replicas")}}


def test_a_managers_unchanged_paths_stay_the_summary_they_were() -> None:
    """The controller's entry is one frozenset per object, kept while the Deployment controller
    writes the status (compared by identity; not one copy per version held by a reconciler's
    memory); an entry that changed is summarised anew."""
    cache = Writer(with_owners=True)
    owner = {"f:metadata": {"f:ownerReferences": {'k:{"uid":"u-9"}': {".": {}, "f:uid": {}}}},
             "f:spec": {"f:replicas": {}}}
    ours = {**MANAGED_FIELDS[0], "fieldsV1": owner}
    theirs = MANAGED_FIELDS[1]
    first = cache.answers.record_write({**obj(rv="10"), "metadata": {
        **obj()["metadata"], "resourceVersion": "10", "managedFields": [ours, theirs]}})
    _, watched = cache.put({**obj(rv="11"), "metadata": {
        **obj()["metadata"], "resourceVersion": "11",
        "managedFields": [ours, {**theirs, "fieldsV1": {"f:metadata": {
            "f:annotations": {"f:revision": {}}}, "f:status": {"f:replicas": {}}}}]}})
    assert watched is not None
    applied = ("ssa-controller", "Apply")
    assert watched.owners[applied] is first.owners[applied]
    _, taken = cache.put({**obj(rv="12"), "metadata": {
        **obj()["metadata"], "resourceVersion": "12",
        "managedFields": [{**ours, "fieldsV1": {"f:spec": {"f:paused": {}}}}, theirs]}})
    assert taken is not None and taken.owners[applied] == {("f:spec", "f:paused")}
    assert watched.owners[("kube-controller-manager", "Update")] == {
        ("f:metadata", "f:annotations", "f:revision")}


# --------------------------------------------------------------------------- ordering


def test_put_reports_every_watched_change_relative_to_the_last_one() -> None:
    cache = Writer()
    cache.put(obj(rv="11", replicas=2))
    old, new = cache.put(obj(rv="12", replicas=3))
    assert old is not None and new is not None
    assert (old.obj["spec"], new.obj["spec"]) == ({"replicas": 2}, {"replicas": 3})


def test_put_takes_a_re_created_object_whatever_its_resource_version() -> None:
    cache = Writer()
    cache.put(obj(rv="12", uid="u-1"))
    cache.put(obj(rv="5", uid="u-2"))
    assert cache.store.get(WEB)["metadata"]["uid"] == "u-2"


# --------------------------------------------------------------------------- write answers


def test_a_write_answer_is_read_until_the_watch_delivers_it() -> None:
    cache = Writer()
    cache.put(obj(rv="10", replicas=1))
    cache.answers.record_write(obj(rv="11", replicas=2))
    assert cache.store.get(WEB)["spec"] == {"replicas": 2}
    assert cache.store.pending_writes() == 1
    cache.put(obj(rv="11", replicas=2))
    assert cache.store.pending_writes() == 0
    assert cache.store.get(WEB)["metadata"]["resourceVersion"] == "11"


def test_a_write_answer_never_hides_a_watched_change() -> None:
    """The race of issue 8 item 2: a user's update (rv 11, generation 2) lands just before the
    controller's status write, whose answer (rv 12) already holds it; the watch delivers the
    user's update afterwards. It must still be reported as a change from what the watch
    delivered before (generation 1), so the key is enqueued."""
    cache = Writer()
    cache.put({**obj(rv="10"), "metadata": {**obj(rv="10")["metadata"], "generation": 1}})
    status_answer = obj(rv="12")
    status_answer["metadata"]["generation"] = 2
    cache.answers.record_write(status_answer)
    user_update = obj(rv="11")
    user_update["metadata"]["generation"] = 2
    old, new = cache.put(user_update)
    assert old is not None and new is not None
    assert (old.obj["metadata"]["generation"], new.obj["metadata"]["generation"]) == (1, 2)
    assert cache.store.get(WEB)["metadata"]["resourceVersion"] == "12"


def test_an_older_write_answer_is_ignored() -> None:
    cache = Writer()
    cache.put(obj(rv="12", replicas=3))
    cache.answers.record_write(obj(rv="11", replicas=2))
    assert cache.store.get(WEB)["spec"] == {"replicas": 3}
    assert cache.store.pending_writes() == 0


def test_unparsable_resource_versions_never_count_as_newer() -> None:
    cache = Writer()
    cache.put(obj(rv="b", replicas=1))
    cache.answers.record_write(obj(rv="c", replicas=2))
    assert cache.store.get(WEB)["spec"] == {"replicas": 1}


def test_a_write_answer_of_an_object_not_watched_yet_is_read() -> None:
    cache = Writer(with_owners=True)
    cache.answers.record_write(obj())
    cached = cache.store.cached(WEB)
    assert cached is not None and "managedFields" not in cached.obj["metadata"]
    assert cached.owners == fieldset.owners(MANAGED_FIELDS)
    assert cache.store.keys() == []


def test_delete_drops_the_write_answer_too() -> None:
    cache = Writer()
    cache.put(obj(rv="10"))
    cache.answers.record_write(obj(rv="11"))
    cache.delete(obj(rv="12"))
    assert cache.store.get(WEB) is None and cache.store.pending_writes() == 0


def test_a_write_answer_arriving_after_the_watch_showed_the_deletion_is_not_recorded() -> None:
    """Issue 24 item 2: the watch delivers DELETED (rv 12) between a status write's answer
    (rv 11) and its recording: the answer must not bring the object back."""
    cache = Writer()
    cache.put(obj(rv="10"))
    cache.delete(obj(rv="12"))
    cache.answers.record_write(obj(rv="11"))
    assert cache.store.get(WEB) is None and cache.store.pending_writes() == 0


def test_a_write_answer_newer_than_the_deletion_is_read() -> None:
    """The controller re-created the object after the watch showed it deleted."""
    cache = Writer()
    cache.put(obj(rv="10"))
    cache.delete(obj(rv="12"))
    cache.answers.record_write(obj(rv="13", uid="u-2"))
    assert cache.store.get(WEB)["metadata"]["uid"] == "u-2"


def test_the_watch_showing_the_object_again_lifts_its_deletion() -> None:
    cache = Writer()
    cache.delete(obj(rv="12"))
    cache.put(obj(rv="13", uid="u-2"))
    cache.delete(obj(rv="14", uid="u-2"))
    cache.put(obj(rv="16", uid="u-3"))
    cache.answers.record_write(obj(rv="17", uid="u-3", replicas=2))
    assert cache.store.get(WEB)["spec"] == {"replicas": 2}


def test_a_relist_that_finds_an_object_gone_counts_as_its_deletion() -> None:
    cache = Writer()
    cache.put(obj("gone", rv="10"))
    cache.replace([], "20")
    cache.answers.record_write(obj("gone", rv="15"))
    assert cache.store.get(ObjectKey("demo", "gone")) is None
    cache.answers.record_write(obj("gone", rv="21", uid="u-2"))
    assert cache.store.get(ObjectKey("demo", "gone")) is not None


def test_deletions_are_remembered_up_to_a_bound(monkeypatch) -> None:
    monkeypatch.setattr(store_module, "DELETED_MEMORY", 2)
    cache = Writer()
    for name, rv in (("a", "10"), ("b", "11"), ("c", "12")):
        cache.delete(obj(name, rv=rv))
    for name in ("a", "b", "c"):
        cache.answers.record_write(obj(name, rv="9"))
    assert names_read(cache, "a", "b", "c") == ["a"]  # the oldest deletion was forgotten


def names_read(cache: Writer, *wanted: str) -> list[str]:
    return [name for name in wanted if cache.store.get(ObjectKey("demo", name)) is not None]


# --------------------------------------------------------------------------- replace


def test_replace_reports_listed_and_vanished_objects() -> None:
    cache = Writer()
    cache.put(obj("kept", rv="1", replicas=1))
    cache.put(obj("gone", rv="2"))
    changes = cache.replace(listed(cache, obj("kept", rv="3", replicas=2), obj("new", rv="4")), "5")
    by_key = {str(ObjectKey.of((new or old).obj)): (old, new)  # type: ignore[union-attr]
              for old, new in changes}
    assert set(by_key) == {"demo/kept", "demo/gone", "demo/new"}
    old, new = by_key["demo/kept"]
    assert old is not None and new is not None
    assert (old.obj["spec"], new.obj["spec"]) == ({"replicas": 1}, {"replicas": 2})
    assert by_key["demo/gone"][1] is None
    assert by_key["demo/new"][0] is None
    assert names(cache) == ["demo/kept", "demo/new"]
    assert "managedFields" not in cache.store.get(ObjectKey("demo", "new"))["metadata"]


def test_replace_in_a_namespace_leaves_other_namespaces_alone() -> None:
    cache = Writer()
    cache.put(obj("a", namespace="demo"))
    cache.put(obj("b", namespace="demo"))
    cache.put(obj("a", namespace="demo2"))
    cache.put(obj("a", namespace="other"))
    changes = cache.replace(listed(cache, obj("a", namespace="demo", rv="20")), "20",
                            namespace="demo")
    assert sorted((str(ObjectKey.of((new or old).obj)), new is None)  # type: ignore[union-attr]
                  for old, new in changes) == [
        ("demo/a", False), ("demo/b", True)]
    assert names(cache) == ["demo/a", "demo2/a", "other/a"]


def test_replace_of_everything_with_nothing_empties_the_store() -> None:
    cache = Writer()
    cache.put(obj("a", namespace="demo"))
    cache.put(obj("a", namespace="other"))
    assert len(cache.replace([], "30")) == 2
    assert len(cache.store) == 0


def test_a_relist_never_moves_reads_backwards() -> None:
    cache = Writer()
    cache.put(obj("web", rv="10", replicas=1))
    cache.answers.record_write(obj("web", rv="15", replicas=2))
    cache.replace(listed(cache, obj("web", rv="10", replicas=1)), "14")
    assert cache.store.get(WEB)["spec"] == {"replicas": 2}


def test_a_relist_drops_answers_of_objects_deleted_since() -> None:
    cache = Writer()
    cache.answers.record_write(obj("gone", rv="15"))
    cache.answers.record_write(obj("later", rv="25"))
    cache.replace([], "20")
    assert cache.store.get(ObjectKey("demo", "gone")) is None
    assert cache.store.get(ObjectKey("demo", "later")) is not None
