"""Unit tests for ssa_controller.runtime.fieldset: apply-body paths and managedFields summaries.

The ground truth below was captured from a real v1.20.2 kube-apiserver: applying APPLIED_BODY
under the manager "ssa-controller" recorded exactly RECORDED_FIELDS.
"""

from __future__ import annotations

from typing import Any

import pytest
from workload_fields import WORKLOAD_BODY, WORKLOAD_RECORDED

from ssa_controller.runtime import fieldset

OWNER_UID = "11111111-1111-1111-1111-111111111111"
CONTAINER = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}')

APPLIED_BODY: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {
        "name": "d1", "namespace": "exp",
        "labels": {"app.kubernetes.io/managed-by": "ssa-controller"},
        "annotations": {"x/hash": "abc"},
        "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "AppTask", "name": "d1",
                             "uid": OWNER_UID, "controller": True}],
    },
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"apptasks.example.com/name": "d1"}},
        "template": {
            "metadata": {"labels": {"apptasks.example.com/name": "d1", "tier": "web"},
                         "annotations": {"a": "b"}},
            "spec": {"containers": [{
                "name": "app", "image": "nginx:1", "command": ["a"], "args": ["b", "c"],
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": ""}],
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                          {"containerPort": 53, "protocol": "UDP"}],
                "resources": {"requests": {"cpu": "1000m", "memory": "64Mi"},
                              "limits": {"memory": "128Mi"}},
            }]},
        },
    },
}

_ITEM = {".": {}}
RECORDED_FIELDS: dict[str, Any] = {
    "f:metadata": {
        "f:annotations": {"f:x/hash": {}},
        "f:labels": {"f:app.kubernetes.io/managed-by": {}},
        "f:ownerReferences": {f'k:{{"uid":"{OWNER_UID}"}}': {
            **_ITEM, "f:apiVersion": {}, "f:controller": {}, "f:kind": {}, "f:name": {},
            "f:uid": {}}},
    },
    "f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:annotations": {"f:a": {}},
                           "f:labels": {"f:apptasks.example.com/name": {}, "f:tier": {}}},
            "f:spec": {"f:containers": {'k:{"name":"app"}': {
                **_ITEM, "f:args": {}, "f:command": {},
                "f:env": {'k:{"name":"X"}': {**_ITEM, "f:name": {}, "f:value": {}},
                          'k:{"name":"Y"}': {**_ITEM, "f:name": {}, "f:value": {}}},
                "f:image": {}, "f:name": {},
                "f:ports": {
                    'k:{"containerPort":53,"protocol":"UDP"}': {
                        **_ITEM, "f:containerPort": {}, "f:protocol": {}},
                    'k:{"containerPort":80,"protocol":"TCP"}': {
                        **_ITEM, "f:containerPort": {}, "f:name": {}, "f:protocol": {}},
                },
                "f:resources": {"f:limits": {"f:memory": {}},
                                "f:requests": {"f:cpu": {}, "f:memory": {}}},
            }}},
        },
    },
}

REPLICAS = ("f:spec", "f:replicas")
IMAGE = (*CONTAINER, "f:image")
MANAGED_BY = ("f:metadata", "f:labels", "f:app.kubernetes.io/managed-by")


def entry(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields}


def minimal_body(**metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ns", **metadata},
            "spec": {"replicas": 1}}


# --------------------------------------------------------------------------- body_paths


def test_body_paths_are_exactly_what_the_api_server_recorded() -> None:
    assert fieldset.body_paths(APPLIED_BODY) == frozenset(fieldset.flatten(RECORDED_FIELDS))


def test_selector_is_owned_as_a_whole() -> None:
    paths = fieldset.body_paths(APPLIED_BODY)
    assert ("f:spec", "f:selector") in paths
    assert not [p for p in paths if p[:2] == ("f:spec", "f:selector") and len(p) > 2]


def test_command_and_args_are_owned_as_whole_lists() -> None:
    lists = {(*CONTAINER, "f:command"), (*CONTAINER, "f:args")}
    paths = fieldset.body_paths(APPLIED_BODY)
    assert {p for p in paths if p[:len(CONTAINER) + 1] in lists} == lists


def test_ports_are_keyed_by_container_port_and_protocol_and_own_their_item() -> None:
    port = (*CONTAINER, "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}')
    assert {p for p in fieldset.body_paths(APPLIED_BODY) if p[:len(port)] == port} == {
        (*port, "."), (*port, "f:containerPort"), (*port, "f:protocol"), (*port, "f:name")}


# Recorded on v1.20.2: an empty map in an apply body (annotations: {}, resources: {}) is not
# recorded in managedFields, and neither is a metadata holding only name and namespace.
def test_metadata_with_only_name_and_namespace_records_no_metadata_path() -> None:
    assert fieldset.body_paths(minimal_body()) == {REPLICAS}


def test_empty_maps_are_not_recorded() -> None:
    body = minimal_body(labels={"a": "b"}, annotations={})
    assert fieldset.body_paths(body) == {REPLICAS, ("f:metadata", "f:labels", "f:a")}


# --------------------------------------------------------------------------- flatten / to_fields


def test_to_fields_inverts_flatten() -> None:
    assert fieldset.to_fields(fieldset.flatten(RECORDED_FIELDS)) == RECORDED_FIELDS


def test_flatten_inverts_to_fields() -> None:
    paths = fieldset.body_paths(APPLIED_BODY)
    assert frozenset(fieldset.flatten(fieldset.to_fields(paths))) == paths


def test_flatten_marks_list_item_ownership_with_a_dot() -> None:
    assert list(fieldset.flatten({"f:env": {'k:{"name":"X"}': {".": {}}}})) == [
        ("f:env", 'k:{"name":"X"}', ".")]


# --------------------------------------------------------------------------- owners


def test_owners_keep_only_metadata_and_spec_paths() -> None:
    summary = fieldset.owners([
        entry("ssa-controller", "Apply", RECORDED_FIELDS),
        entry("kube-controller-manager", "Update",
              {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
               "f:status": {"f:replicas": {}, "f:conditions": {}}}),
    ])
    assert summary == {
        ("ssa-controller", "Apply"): frozenset(fieldset.flatten(RECORDED_FIELDS)),
        ("kube-controller-manager", "Update"): frozenset(
            {("f:metadata", "f:annotations", "f:deployment.kubernetes.io/revision")}),
    }


def test_owners_leave_out_managers_that_own_only_status() -> None:
    assert fieldset.owners([entry("kube-controller-manager", "Update",
                                  {"f:status": {"f:replicas": {}}})]) == {}


def test_owners_separate_apply_and_update_of_the_same_manager() -> None:
    summary = fieldset.owners([entry("m", "Apply", {"f:spec": {"f:replicas": {}}}),
                               entry("m", "Update", {"f:metadata": {"f:labels": {"f:x": {}}}})])
    assert fieldset.applied_by(summary, "m") == {REPLICAS}
    assert summary[("m", "Update")] == {("f:metadata", "f:labels", "f:x")}


def _controlled_by(uid: str) -> dict[str, Any]:
    """RECORDED_FIELDS as the apply of a Deployment controlled by the AppTask `uid` records it."""
    refs = RECORDED_FIELDS["f:metadata"]["f:ownerReferences"]
    return {**RECORDED_FIELDS, "f:metadata": {
        **RECORDED_FIELDS["f:metadata"],
        "f:ownerReferences": {f'k:{{"uid":"{uid}"}}': v for v in refs.values()}}}


@pytest.mark.parametrize("fields", [
    RECORDED_FIELDS,
    {"f:metadata": RECORDED_FIELDS["f:metadata"]},
    {"f:metadata": {"f:ownerReferences": RECORDED_FIELDS["f:metadata"]["f:ownerReferences"]}},
    {"f:metadata": {"f:ownerReferences": {}}, "f:spec": {"f:replicas": {}}},
    {"f:metadata": {"f:ownerReferences": {}}},
])
def test_owners_hold_every_path_of_the_entry(fields: dict[str, Any]) -> None:
    summary = fieldset.owners([entry("ssa-controller", "Apply", fields)])
    assert fieldset.applied_by(summary, "ssa-controller") == frozenset(fieldset.flatten(fields))


def test_owners_of_objects_with_other_owners_share_their_other_paths() -> None:
    """Each Deployment is controlled by its own AppTask (its uid keys the owner reference): the
    summaries of 1,000 of them hold one copy of the paths they share and add no shape each."""
    fieldset._shapes.clear()  # noqa: SLF001 - counting the shapes these add
    uids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(1000)]
    summaries = [fieldset.applied_by(fieldset.owners(
        [entry("ssa-controller", "Apply", _controlled_by(uid))]), "ssa-controller")
        for uid in uids]
    assert summaries[7] == frozenset(fieldset.flatten(_controlled_by(uids[7])))
    assert len(fieldset._shapes) == 1  # noqa: SLF001
    distinct = {id(path) for paths in summaries for path in paths}
    per_owner = len(list(fieldset.flatten(RECORDED_FIELDS["f:metadata"]["f:ownerReferences"])))
    shared = len(summaries[0]) - per_owner
    assert len(distinct) == shared + per_owner * len(uids)


def test_owners_take_the_paths_an_earlier_summary_holds_from_it() -> None:
    earlier = fieldset.owners([entry("ssa-controller", "Apply", _controlled_by("u-1")),
                               entry("kubectl", "Update", fieldset.to_fields([IMAGE]))])
    later = fieldset.owners([entry("ssa-controller", "Apply", _controlled_by("u-1")),
                             entry("kubectl", "Update", fieldset.to_fields([REPLICAS]))],
                            like=earlier)
    assert later[("ssa-controller", "Apply")] is earlier[("ssa-controller", "Apply")]
    assert later[("kubectl", "Update")] == {REPLICAS}


# ------------------------------------------------------------------- workload fields, Services

SERVICE_BODY: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "g1", "namespace": "exp",
                 "labels": {"app.kubernetes.io/managed-by": "ssa-controller"}},
    "spec": {"type": "NodePort", "selector": {"a": "g1"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30111},
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]},
}
SERVICE_RECORDED: dict[str, Any] = {
    "f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}},
    "f:spec": {"f:ports": {
        'k:{"port":53,"protocol":"UDP"}': {**_ITEM, "f:name": {}, "f:port": {}, "f:protocol": {},
                                            "f:targetPort": {}},
        'k:{"port":80,"protocol":"TCP"}': {**_ITEM, "f:name": {}, "f:nodePort": {}, "f:port": {},
                                            "f:protocol": {}, "f:targetPort": {}}},
        "f:selector": {"f:a": {}}, "f:type": {}}}
"""What v1.20.2 recorded for SERVICE_BODY: ports by port and protocol, and the selector key by
key (a Service's selector is no atomic LabelSelector)."""


@pytest.mark.parametrize(("body", "recorded"), [(WORKLOAD_BODY, WORKLOAD_RECORDED),
                                                (SERVICE_BODY, SERVICE_RECORDED)])
def test_body_paths_are_what_the_server_records_for_each_kind(body: dict[str, Any],
                                                              recorded: dict[str, Any]) -> None:
    assert fieldset.body_paths(body) == frozenset(fieldset.flatten(recorded))


# ----------------------------------------------------------------- applied_by / taken_by_others


def test_applied_by_is_empty_for_an_unknown_manager() -> None:
    summary = fieldset.owners([entry("kubectl", "Update", {"f:spec": {"f:replicas": {}}})])
    assert fieldset.applied_by(summary, "ssa-controller") == frozenset()


def test_taken_by_others_names_each_other_manager_with_sorted_paths() -> None:
    summary = fieldset.owners([
        entry("ssa-controller", "Apply", {"f:metadata": {"f:labels": {
            "f:app.kubernetes.io/managed-by": {}}}}),
        entry("kubectl-edit", "Update", fieldset.to_fields([IMAGE, REPLICAS])),
        entry("hpa", "Update", fieldset.to_fields([REPLICAS])),
    ])
    taken = fieldset.taken_by_others(summary, "ssa-controller", [IMAGE, REPLICAS, MANAGED_BY])
    assert taken == {"kubectl-edit": sorted([IMAGE, REPLICAS]), "hpa": [REPLICAS]}


def test_taken_by_others_sorts_the_paths_of_a_manager_with_update_and_apply_entries() -> None:
    summary = fieldset.owners([entry("kubectl", "Update", fieldset.to_fields([IMAGE])),
                               entry("kubectl", "Apply", fieldset.to_fields([REPLICAS]))])
    taken = fieldset.taken_by_others(summary, "ssa-controller", [IMAGE, REPLICAS])
    assert taken == {"kubectl": sorted([IMAGE, REPLICAS])}


def test_taken_by_others_is_empty_when_nobody_else_owns_the_paths() -> None:
    summary = fieldset.owners([entry("ssa-controller", "Apply", fieldset.to_fields([REPLICAS])),
                               entry("kubectl", "Update", fieldset.to_fields([IMAGE]))])
    assert fieldset.taken_by_others(summary, "ssa-controller", [REPLICAS]) == {}


# --------------------------------------------------------------------------- display


@pytest.mark.parametrize(("path", "shown"), [
    (REPLICAS, ".spec.replicas"),
    (IMAGE, '.spec.template.spec.containers[name="app"].image'),
    ((*CONTAINER, "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}', "f:name"),
     '.spec.template.spec.containers[name="app"].ports[containerPort=80,protocol="TCP"].name'),
    ((*CONTAINER, "f:env", 'k:{"name":"X"}', "."),
     '.spec.template.spec.containers[name="app"].env[name="X"]'),
    (MANAGED_BY, ".metadata.labels.app.kubernetes.io/managed-by"),
])
def test_display_prints_paths_as_the_api_server_does(path: fieldset.Path, shown: str) -> None:
    assert fieldset.display(path) == shown
