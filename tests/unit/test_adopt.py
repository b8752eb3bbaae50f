"""Unit tests for ssa_controller.apptask.adopt: moving client-side ownership to the controller
(migrate) and handing a released `replicas` to the hand-off manager (handoff_body)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ssa_controller.apptask.adopt import handoff_body, handoff_manager, migrate
from ssa_controller.runtime import fieldset

Obj = dict[str, Any]
MANAGER = "ssa-controller"
NOW = "2026-01-02T00:00:00Z"
CONTAINER = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}')
REPLICAS = ("f:spec", "f:replicas")
SELECTOR = ("f:spec", "f:selector")
IMAGE = (*CONTAINER, "f:image")
CONTAINER_ITEM = (*CONTAINER, ".")
LAST_APPLIED = ("f:metadata", "f:annotations",
                "f:kubectl.kubernetes.io/last-applied-configuration")
STRATEGY = ("f:spec", "f:strategy", "f:type")
REVISION = ("f:metadata", "f:annotations", "f:deployment.kubernetes.io/revision")
WANTED = frozenset({REPLICAS, SELECTOR, IMAGE, CONTAINER_ITEM})


def entry(manager: str, operation: str, paths: list[fieldset.Path] | frozenset[fieldset.Path],
          time: str = "2026-01-01T00:00:00Z") -> Obj:
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1", "time": time,
            "fieldsType": "FieldsV1", "fieldsV1": fieldset.to_fields(paths)}


def paths_of(entries: list[Obj], manager: str, operation: str) -> frozenset[fieldset.Path]:
    [found] = [e for e in entries if (e["manager"], e["operation"]) == (manager, operation)]
    return frozenset(fieldset.flatten(found["fieldsV1"]))


CONTROLLER_MANAGER = entry("kube-controller-manager", "Update", [REVISION])


@pytest.mark.parametrize("client", ["kubectl-client-side-apply", "before-first-apply",
                                    "kubectl-create"])
def test_wanted_paths_move_from_a_client_side_manager_to_a_new_apply_entry(client: str) -> None:
    entries = [entry(client, "Update", [REPLICAS, SELECTOR, IMAGE, CONTAINER_ITEM, LAST_APPLIED,
                                        STRATEGY]),
               CONTROLLER_MANAGER]
    result = migrate(entries, WANTED, MANAGER, "apps/v1", NOW)
    assert result is not None
    assert paths_of(result, client, "Update") == {LAST_APPLIED, STRATEGY}
    assert paths_of(result, MANAGER, "Apply") == WANTED
    [applied] = [e for e in result if e["manager"] == MANAGER]
    assert applied == {"manager": MANAGER, "operation": "Apply", "apiVersion": "apps/v1",
                       "time": NOW, "fieldsType": "FieldsV1",
                       "fieldsV1": fieldset.to_fields(WANTED)}


def test_moved_paths_join_an_existing_apply_entry() -> None:
    entries = [entry(MANAGER, "Apply", [SELECTOR]),
               entry("kubectl-client-side-apply", "Update", [REPLICAS, IMAGE, LAST_APPLIED])]
    result = migrate(entries, WANTED, MANAGER, "apps/v1", NOW)
    assert result is not None
    assert [(e["manager"], e["operation"]) for e in result] == [
        (MANAGER, "Apply"), ("kubectl-client-side-apply", "Update")]
    assert paths_of(result, MANAGER, "Apply") == {SELECTOR, REPLICAS, IMAGE}
    assert paths_of(result, "kubectl-client-side-apply", "Update") == {LAST_APPLIED}


def test_paths_of_several_client_side_managers_are_all_moved() -> None:
    entries = [entry("before-first-apply", "Update", [REPLICAS, SELECTOR]),
               entry("kubectl-client-side-apply", "Update", [IMAGE, LAST_APPLIED])]
    result = migrate(entries, WANTED, MANAGER, "apps/v1", NOW)
    assert result is not None
    assert paths_of(result, MANAGER, "Apply") == {REPLICAS, SELECTOR, IMAGE}


def test_a_client_side_entry_left_with_nothing_is_dropped() -> None:
    result = migrate([entry("kubectl-create", "Update", [REPLICAS, IMAGE])], WANTED, MANAGER,
                     "apps/v1", NOW)
    assert result is not None
    assert [e["manager"] for e in result] == [MANAGER]


def test_other_managers_are_left_alone() -> None:
    edit = entry("kubectl-edit", "Update", [IMAGE])
    hpa = entry("hpa-controller", "Apply", [REPLICAS])
    entries = [entry("kubectl-client-side-apply", "Update", [SELECTOR]), edit, hpa,
               CONTROLLER_MANAGER]
    result = migrate(entries, WANTED, MANAGER, "apps/v1", NOW)
    assert result is not None
    assert edit in result and hpa in result and CONTROLLER_MANAGER in result
    assert paths_of(result, MANAGER, "Apply") == {SELECTOR}


def test_nothing_to_move_gives_none() -> None:
    entries = [entry("kubectl-client-side-apply", "Update", [LAST_APPLIED, STRATEGY]),
               entry("kubectl-edit", "Update", [IMAGE]), CONTROLLER_MANAGER]
    assert migrate(entries, WANTED, MANAGER, "apps/v1", NOW) is None


def test_an_object_without_client_side_managers_gives_none() -> None:
    entries = [entry(MANAGER, "Apply", WANTED), CONTROLLER_MANAGER]
    assert migrate(entries, WANTED, MANAGER, "apps/v1", NOW) is None


def test_migrate_does_not_modify_the_given_entries() -> None:
    entries = [entry(MANAGER, "Apply", [SELECTOR]),
               entry("kubectl-client-side-apply", "Update", [REPLICAS, LAST_APPLIED])]
    before = copy.deepcopy(entries)
    migrate(entries, WANTED, MANAGER, "apps/v1", NOW)
    assert entries == before


def test_the_ownership_mark_of_a_list_holding_wanted_items_moves_too() -> None:
    """On v1.20 the API server hands a whole list back to the manager keeping its "." mark."""
    env = (*CONTAINER, "f:env")
    item = (*env, 'k:{"name":"A"}')
    wanted = frozenset({(*item, "."), (*item, "f:name"), (*item, "f:value")})
    entries = [entry("kubectl-client-side-apply", "Update", [(*env, "."), *wanted, STRATEGY])]
    result = migrate(entries, wanted, MANAGER, "apps/v1", NOW)
    assert result is not None
    assert paths_of(result, "kubectl-client-side-apply", "Update") == {STRATEGY}
    assert paths_of(result, MANAGER, "Apply") == wanted | {(*env, ".")}


# --------------------------------------------------------------------------- hand-off

BODY = {"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "labels": {"a": "b"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}}}}
LIVE = {**BODY, "spec": {**BODY["spec"], "replicas": 3, "paused": False}}
BODY_PATHS = fieldset.body_paths(BODY)


def test_released_replicas_are_handed_off_with_their_live_value() -> None:
    owned = {(MANAGER, "Apply"): BODY_PATHS | {REPLICAS}}
    assert handoff_body(BODY, LIVE, owned, MANAGER) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo"}, "spec": {"replicas": 3}}


def test_replicas_the_body_still_sets_are_not_handed_off() -> None:
    body = {**BODY, "spec": {**BODY["spec"], "replicas": 2}}
    owned = {(MANAGER, "Apply"): fieldset.body_paths(body)}
    assert handoff_body(body, LIVE, owned, MANAGER) is None


def test_replicas_another_manager_owns_are_not_handed_off() -> None:
    for other in [("hpa-controller", "Update"), (handoff_manager(MANAGER), "Apply")]:
        owned = {(MANAGER, "Apply"): BODY_PATHS | {REPLICAS}, other: frozenset({REPLICAS})}
        assert handoff_body(BODY, LIVE, owned, MANAGER) is None


def test_replicas_the_controller_never_owned_are_not_handed_off() -> None:
    assert handoff_body(BODY, LIVE, {(MANAGER, "Apply"): BODY_PATHS}, MANAGER) is None


def test_other_released_fields_are_not_handed_off_they_are_removed() -> None:
    owned = {(MANAGER, "Apply"): BODY_PATHS | {IMAGE, ("f:spec", "f:paused")}}
    assert handoff_body(BODY, LIVE, owned, MANAGER) is None


def test_the_handoff_manager_is_named_after_the_field_manager_within_the_length_limit() -> None:
    assert handoff_manager(MANAGER) == "ssa-controller-handoff"
    long = "m" * 128
    assert len(handoff_manager(long)) == 128 and handoff_manager(long).endswith("-handoff")
