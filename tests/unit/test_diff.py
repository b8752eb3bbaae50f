"""Unit tests for ssa_controller.apptask.diff: dry-run plans as RFC 6902 JSON Patches."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from ssa_controller.apptask import diff

Obj = dict[str, Any]


def live() -> Obj:
    """A cached live Deployment: bookkeeping and status included."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "uid": "d-1", "resourceVersion": "200",
                     "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"app.kubernetes.io/managed-by": "ssa-controller"},
                     "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {"replicas": 2,
                 "template": {"spec": {"containers": [
                     {"name": "app", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                      "resources": {"requests": {"cpu": "1"}},
                      "env": [{"name": "MODE", "value": "prod"}]}]}}},
        "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": 3},
    }


def dry_run_result(base: Obj) -> Obj:
    """What the API server answers for a dry-run apply: new bookkeeping."""
    result = copy.deepcopy(base)
    result["metadata"].update(resourceVersion="201", generation=4,
                              managedFields=[{"manager": "ssa-controller", "operation": "Apply",
                                              "time": "2026-01-02T00:00:00Z"}])
    result["status"] = {"replicas": 2, "readyReplicas": 1, "observedGeneration": 2}
    return result


def container(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]["containers"][0]


# --------------------------------------------------------------------------- comparable


def test_comparable_drops_status_bookkeeping_and_cache_only_keys() -> None:
    view = diff.comparable(live())
    assert set(view) == {"apiVersion", "kind", "metadata", "spec"}
    assert view["metadata"] == {"name": "web", "namespace": "demo",
                                "labels": {"app.kubernetes.io/managed-by": "ssa-controller"},
                                "annotations": {"deployment.kubernetes.io/revision": "3"}}


def test_comparable_of_nothing_is_empty() -> None:
    assert diff.comparable(None) == {}


# --------------------------------------------------------------------------- plan


def test_an_absent_deployment_is_created() -> None:
    result = dry_run_result(live())
    plan = diff.plan("demo/web", None, result)
    assert plan.action == "created"
    assert plan.changes
    assert jsonpatch.apply_patch({}, plan.patch) == diff.comparable(result)


def test_only_bookkeeping_and_status_differences_are_unchanged() -> None:
    plan = diff.plan("demo/web", live(), dry_run_result(live()))
    assert (plan.action, plan.patch, plan.changes) == ("unchanged", [], False)


def test_a_real_change_is_configured_with_a_patch_from_live_to_result() -> None:
    changed = dry_run_result(live())
    changed["spec"]["replicas"] = 3
    container(changed)["image"] = "nginx:1.26"
    container(changed)["env"].append({"name": "DEBUG", "value": "1"})
    del changed["metadata"]["labels"]
    plan = diff.plan("demo/web", live(), changed)
    assert plan.action == "configured"
    assert plan.changes
    assert jsonpatch.apply_patch(diff.comparable(live()), plan.patch) == diff.comparable(changed)


def test_the_patch_never_touches_status_or_bookkeeping() -> None:
    changed = dry_run_result(live())
    changed["spec"]["replicas"] = 3
    plan = diff.plan("demo/web", live(), changed)
    assert plan.patch == [{"op": "replace", "path": "/spec/replicas", "value": 3}]


def test_as_dict_is_json_ready() -> None:
    plan = diff.Plan("demo/web", diff.Action.CONFLICT,
                     detail='conflict with "kubectl": .spec.replicas')
    assert json.loads(json.dumps(plan.as_dict())) == {
        "key": "demo/web", "action": "conflict", "whenUnpaused": None, "patch": [],
        "detail": 'conflict with "kubectl": .spec.replicas'}
    assert not plan.changes


def test_a_listed_deployment_without_type_fields_is_unchanged() -> None:
    """List items carry no apiVersion and kind; the live object may come from one."""
    listed = {k: v for k, v in live().items() if k not in ("apiVersion", "kind")}
    plan = diff.plan("demo/web", listed, dry_run_result(live()))
    assert (plan.action, plan.patch) == ("unchanged", [])


def test_a_paused_plan_keeps_the_patch_and_says_what_would_be_done_once_unpaused() -> None:
    changed = dry_run_result(live())
    changed["spec"]["replicas"] = 3
    plan = diff.plan("demo/web", live(), changed).paused()
    assert (plan.action, plan.unpaused, plan.verdict) == ("paused", "configured", "configured")
    assert plan.patch == [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    assert not plan.changes
    assert plan.as_dict()["whenUnpaused"] == "configured"
    assert diff.render_text([plan]) == ("demo/web: paused (when unpaused: configured)\n"
                                        "    replace /spec/replicas 3")
    refused = diff.Plan("demo/web", diff.Action.INVALID, detail="spec.image is required").paused()
    assert diff.headline(refused) == ("demo/web: paused (when unpaused: invalid: "
                                      "spec.image is required)")


# --------------------------------------------------------------------------- render_text


def test_render_text_lists_plans_by_key_with_their_operations() -> None:
    plans = [
        diff.Plan("demo/b", diff.Action.CONFIGURED, [
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels", "value": {"tier": "web", "a": "1"}},
            {"op": "remove", "path": "/spec/template/spec/containers/0/args"}]),
        diff.Plan("demo/a", diff.Action.UNCHANGED),
        diff.Plan("demo/c", diff.Action.CONFLICT,
                  detail='conflict with "kubectl": .spec.replicas'),
    ]
    assert diff.render_text(plans) == "\n".join([
        "demo/a: unchanged",
        "demo/b: configured",
        "    replace /spec/replicas 3",
        '    add /metadata/labels {"a": "1", "tier": "web"}',
        "    remove /spec/template/spec/containers/0/args",
        'demo/c: conflict (conflict with "kubectl": .spec.replicas)',
    ])


def test_render_text_of_no_plans_is_empty() -> None:
    assert diff.render_text([]) == ""


def test_a_plan_serialises_its_action_as_the_same_string() -> None:
    plan = diff.Plan("demo/web", diff.Action.CONFIGURED)
    assert json.loads(json.dumps(plan.as_dict()))["action"] == "configured"
    assert diff.render_text([plan]) == "demo/web: configured"
