"""Unit tests for apptask.unions and fieldset.extract: the takeover apply that lets a switch of
union members (strategy type, volume source, probe handler, env value source) be applied.
The live objects are as a v1.20.2 kube-apiserver stores them (tests/workload_fields.py)."""

from __future__ import annotations

import copy
from typing import Any

from workload_fields import WORKLOAD_BODY, WORKLOAD_LIVE, WORKLOAD_RECORDED

from ssa_controller.apptask import drift, unions
from ssa_controller.runtime import fieldset

MANAGER = "ssa-controller"
OWNERS: fieldset.Owners = {(MANAGER, "Apply"): frozenset(fieldset.flatten(WORKLOAD_RECORDED))}
POD = ("f:spec", "f:template", "f:spec")
CONTAINER = (*POD, "f:containers", 'k:{"name":"app"}')


def body_with(**changes: Any) -> dict[str, Any]:
    """WORKLOAD_BODY with its spec's `strategy`, or its container's or pod's fields changed."""
    body = copy.deepcopy(WORKLOAD_BODY)
    pod = body["spec"]["template"]["spec"]
    for name, value in changes.items():
        if name == "strategy":
            body["spec"]["strategy"] = value
        elif name in pod["containers"][0] or name in ("livenessProbe", "env"):
            pod["containers"][0][name] = value
        else:
            pod[name] = value
    return body


def test_a_body_that_switches_nothing_needs_no_takeover() -> None:
    assert unions.leftovers(WORKLOAD_BODY, WORKLOAD_LIVE) == []
    assert unions.takeover(WORKLOAD_BODY, WORKLOAD_LIVE, OWNERS, MANAGER) is None


def test_each_switched_member_is_found() -> None:
    body = body_with(
        strategy={"type": "Recreate"},
        livenessProbe={"tcpSocket": {"port": 80}},
        env=[{"name": "M", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        volumes=[{"name": "a", "secret": {"secretName": "s"}},
                 {"name": "b", "configMap": {"name": "c"}}])
    assert unions.leftovers(body, WORKLOAD_LIVE) == [
        ("f:spec", "f:strategy", "f:rollingUpdate"),
        (*POD, "f:containers", 'k:{"name":"app"}', "f:env", 'k:{"name":"M"}', "f:valueFrom",
         "f:resourceFieldRef"),
        (*CONTAINER, "f:livenessProbe", "f:httpGet"),
        (*POD, "f:volumes", 'k:{"name":"a"}', "f:configMap"),
        (*POD, "f:volumes", 'k:{"name":"b"}', "f:emptyDir"),
    ]


def test_the_takeover_owns_what_was_owned_and_the_members_changing_no_value() -> None:
    body = body_with(strategy={"type": "Recreate"}, livenessProbe={"exec": {"command": ["x"]}})
    taken = unions.takeover(body, WORKLOAD_LIVE, OWNERS, MANAGER)
    assert taken is not None
    assert taken["spec"]["strategy"] == WORKLOAD_LIVE["spec"]["strategy"]
    [container] = taken["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": 80, "scheme": "HTTP"}
    assert fieldset.body_paths(taken) >= OWNERS[(MANAGER, "Apply")] - {
        (*CONTAINER, "f:volumeMounts", 'k:{"mountPath":"/a"}', "f:readOnly"),
        (*CONTAINER, "f:livenessProbe", "f:initialDelaySeconds"),
        ("f:spec", "f:minReadySeconds")}  # owned zero values the live object leaves out
    assert (*CONTAINER, "f:livenessProbe", "f:httpGet", "f:scheme") in fieldset.body_paths(taken)
    assert drift.compute(taken, WORKLOAD_LIVE, fieldset.body_paths(taken)).changed == ()


def test_a_member_another_manager_owns_part_of_is_left_alone() -> None:
    owners = {**OWNERS, ("kubectl-edit", "Update"): frozenset({
        ("f:spec", "f:strategy", "f:rollingUpdate", "f:maxUnavailable")})}
    assert unions.takeover(body_with(strategy={"type": "Recreate"}), WORKLOAD_LIVE, owners,
                           MANAGER) is None


def test_a_member_owned_whole_already_needs_no_takeover() -> None:
    live = copy.deepcopy(WORKLOAD_LIVE)
    live["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 1}
    assert unions.takeover(body_with(strategy={"type": "Recreate"}), live, OWNERS,
                           MANAGER) is None


def test_an_empty_struct_has_nothing_to_take_over() -> None:
    live = copy.deepcopy(WORKLOAD_LIVE)
    live["spec"]["template"]["spec"]["volumes"][1]["emptyDir"] = {}
    body = body_with(volumes=[WORKLOAD_BODY["spec"]["template"]["spec"]["volumes"][0],
                              {"name": "b", "configMap": {"name": "c"}}])
    assert unions.takeover(body, live, OWNERS, MANAGER) is None


def test_extract_copies_values_at_paths_with_their_list_items_keys() -> None:
    paths = [(*POD, "f:volumes", 'k:{"name":"a"}', "f:configMap", "f:name"),
             (*POD, "f:volumes", 'k:{"name":"b"}', "."),
             (*CONTAINER, "f:livenessProbe"), ("f:spec", "f:nothing"),
             (*POD, "f:volumes", 'k:{"name":"zz"}', "f:name")]
    assert fieldset.extract(WORKLOAD_LIVE, paths) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "g1", "namespace": "exp"},
        "spec": {"template": {"spec": {
            "containers": [{"name": "app", "livenessProbe": WORKLOAD_LIVE["spec"]["template"][
                "spec"]["containers"][0]["livenessProbe"]}],
            "volumes": [{"name": "a", "configMap": {"name": "cm"}}, {"name": "b"}]}}}}


def test_value_at_reads_through_keyed_items() -> None:
    assert fieldset.value_at(WORKLOAD_LIVE, (*CONTAINER, "f:volumeMounts",
                                             'k:{"mountPath":"/a"}', "f:name")) == "a"
    assert fieldset.value_at(WORKLOAD_LIVE, (*POD, "f:volumes", 'k:{"name":"x"}')) \
        is fieldset.MISSING


def test_a_probe_the_body_stops_setting_is_removed_whole_by_a_guarded_patch() -> None:
    body = copy.deepcopy(WORKLOAD_BODY)
    del body["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    live = {**WORKLOAD_LIVE, "metadata": {**WORKLOAD_LIVE["metadata"], "resourceVersion": "7"}}
    assert unions.removal(body, live, OWNERS, MANAGER) == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
        {"op": "remove", "path": "/spec/template/spec/containers/0/livenessProbe"}]
    assert unions.takeover(body, live, OWNERS, MANAGER) is None
    assert unions.removal(WORKLOAD_BODY, live, OWNERS, MANAGER) is None


def test_a_probe_not_ours_or_partly_anothers_is_not_removed() -> None:
    body = copy.deepcopy(WORKLOAD_BODY)
    del body["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    live = {**WORKLOAD_LIVE, "metadata": {**WORKLOAD_LIVE["metadata"], "resourceVersion": "7"}}
    probe = (*CONTAINER, "f:livenessProbe")
    assert unions.removal(body, live, {(MANAGER, "Apply"): frozenset(
        p for p in OWNERS[(MANAGER, "Apply")] if p[:len(probe)] != probe)}, MANAGER) is None
    shared = {**OWNERS, ("kubectl-edit", "Update"): frozenset({(*probe, "f:periodSeconds")})}
    assert unions.removal(body, live, shared, MANAGER) is None
