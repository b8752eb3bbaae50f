"""The workload fields of the AppTask API against a real kube-apiserver v1.20.2: each is set,
changed, released and restored after another writer's change with one apply each; values the
server defaults never count as drift (idle resyncs send nothing); a switched union member
(a volume's source, a probe's handler, the strategy's type) is applied; affinity the server
refuses reaches the status; admission refusals apply nothing (tests/workload_fields.py holds
the values)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from helpers import CONTROLLER, apptask, condition, get_deployment, put_apptask, scoped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workload_fields import ENV_FROM_FIELD, SAMPLES, Sample, at, where

from ssa_controller.apptask import desired, drift, fields, quantity
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.envtest import PollTimeout
from ssa_controller.runtime import fieldset
from ssa_controller.settings.config import AdmissionConfig

STRATEGIC = "application/strategic-merge-patch+json"


def synced(admin: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The AppTask's status once it describes its current generation, else None."""
    task = admin.get(APPTASKS.path(namespace, name))
    st = task.get("status") or {}
    if st.get("observedGeneration") != task["metadata"]["generation"]:
        return None
    return st


def wait_synced(admin: Any, namespace: str, names: list[str], poll_until: Any,
                reason: str = "Synced") -> None:
    def behind() -> dict[str, Any]:
        """The AppTasks not there yet, with their Synced condition."""
        statuses = {n: synced(admin, namespace, n) for n in names}
        return {n: st and condition(st, "Synced") for n, st in statuses.items()
                if st is None or condition(st, "Synced").get("reason") != reason}
    try:
        poll_until(lambda: not behind(), timeout=120)
    except PollTimeout:
        raise AssertionError(f"not {reason}: {behind()}") from None


UNION_SWITCHES = {
    "strategy": ({"type": "RollingUpdate"}, {"type": "Recreate"}),
    "livenessProbe": ({"httpGet": {"path": "/", "port": 8080}}, {"tcpSocket": {"port": 8080}}),
    "volumes": ([{"name": "v", "secret": {"secretName": "s"}}],
                [{"name": "v", "configMap": {"name": "c"}}]),
    "env": ([{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
}
"""Fields whose first value leaves members of a union (defaulted or owned) that the second
value's member may not stand beside: server-side apply alone cannot remove an unowned struct."""


def test_a_union_member_switched_in_the_spec_is_applied(admin, controller, namespace,
                                                        poll_until):
    """One takeover apply (owning the members switched from, changing nothing) before the
    apply; an emptyDir without fields has nothing to own and stays refused (the API server's
    message in the status)."""
    controller(scoped(namespace))
    names = [name.lower() for name in UNION_SWITCHES]
    for name, (first, _) in UNION_SWITCHES.items():
        put_apptask(admin, apptask(name.lower(), namespace, **{name: first}))
    put_apptask(admin, apptask("empty", namespace, volumes=[{"name": "v", "emptyDir": {}}]))
    wait_synced(admin, namespace, [*names, "empty"], poll_until)
    for name, (_, second) in UNION_SWITCHES.items():
        put_apptask(admin, apptask(name.lower(), namespace, **{name: second}))
    put_apptask(admin, apptask("empty", namespace, volumes=UNION_SWITCHES["volumes"][1]))
    wait_synced(admin, namespace, names, poll_until)
    wait_synced(admin, namespace, ["empty"], poll_until, reason="ApplyRejected")
    assert "may not specify more than 1 volume type" in condition(
        synced(admin, namespace, "empty"), "Synced")["message"]
    deployments = {n: get_deployment(admin, namespace, n) for n in names}
    assert deployments["strategy"]["spec"]["strategy"] == {"type": "Recreate"}
    [probed] = deployments["livenessprobe"]["spec"]["template"]["spec"]["containers"]
    assert "httpGet" not in probed["livenessProbe"]
    assert probed["livenessProbe"]["tcpSocket"] == {"port": 8080}
    [volume] = deployments["volumes"]["spec"]["template"]["spec"]["volumes"]
    assert volume == {"name": "v", "configMap": {"name": "c", "defaultMode": 0o644}}
    [env] = deployments["env"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}


# --------------------------------------------------------------------------- each field

def holds(wanted: Any, live: Any, name: str = "") -> bool:
    """Whether the live value holds what was set: maps key by key (the server adds defaults),
    lists item by item, zero values it leaves out as absent, quantities by value."""
    if live is None:
        return wanted in (False, 0, "", [], {})
    if name in ("sizeLimit", "divisor"):
        return quantity.stored(wanted) == quantity.stored(live)
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(holds(v, live.get(k), k)
                                              for k, v in wanted.items())
    if isinstance(wanted, list) and name in KEYED:  # another writer's items may stand beside
        keys = KEYED[name]
        return isinstance(live, list) and all(any(
            all(item.get(k) == w.get(k) for k in keys) and holds(w, item) for item in live)
            for w in wanted)
    if isinstance(wanted, list):
        return isinstance(live, list) and len(wanted) == len(live) and all(
            holds(w, v, name) for w, v in zip(wanted, live, strict=True))
    return bool(wanted == live)


KEYED = {"env": ("name",), "volumeMounts": ("mountPath",), "volumes": ("name",),
         "imagePullSecrets": ("name",), "topologySpreadConstraints": ("topologyKey",
                                                                      "whenUnsatisfiable")}
"""The Deployment's lists merged by key: an item another writer adds is no change of ours."""


def field_tasks() -> dict[str, tuple[str, Sample]]:
    """AppTask name -> (field, its sample): one AppTask per workload field and env valueFrom."""
    tasks = {name.lower(): (name, sample) for name, sample in SAMPLES.items()}
    tasks["env-value-from"] = ("env", ENV_FROM_FIELD)
    return tasks


def foreign_patch(field: str, value: Any) -> tuple[dict[str, Any], str]:
    """Another writer's change of a field on the Deployment: the container's by a strategic
    merge patch (containers by name), the pod's and the Deployment's by a merge patch."""
    if field == "env" or field in fields.CONTAINER:
        return ({"spec": {"template": {"spec": {"containers": [{"name": "app", field: value}]}}}},
                STRATEGIC)
    location = where(field)
    patch: dict[str, Any] = {}
    node = patch
    for step in location[:-1]:
        node = node.setdefault(step, {})
    node[location[-1]] = value
    return patch, MERGE_PATCH


def value_of(deployment: dict[str, Any], field: str) -> Any:
    return at(deployment, ("spec", "template", "spec", "containers", "*", "env")
              if field == "env" else where(field))


def test_each_workload_field_is_set_changed_released_and_restored_once(
        admin, controller, namespace, cluster, poll_until):
    """Per field, in one AppTask each (all at once): created with the field (one apply),
    changed (one apply; none where the change is no change), removed (one apply: the
    controller no longer owns any of it), set again and changed on the Deployment by another
    writer (restored by exactly one apply). After each step the controller's Apply entry owns
    exactly the rendered body's paths, and idle resyncs then send nothing at all."""
    for account in ("app-a", "app-b"):
        admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                     {"metadata": {"name": account}})
    process = controller(scoped(namespace, resync={"period": "2s", "jitter": 0},
                                admission={"allowRunAsRoot": True}))
    tasks = field_tasks()
    names = sorted(tasks)

    def put(step: str) -> None:
        for name, (field, sample) in tasks.items():
            spec = dict(sample.context)
            if step != "removed":
                spec[field] = getattr(sample, step)
            put_apptask(admin, apptask(name, namespace, **spec))

    def applies(since: int) -> dict[str, int]:
        counts = dict.fromkeys(names, 0)
        for event in cluster.audit.select(since, user=CONTROLLER, namespace=namespace,
                                          resource="deployments", verb="patch"):
            counts[event.name] += 1
        return counts

    def check(step: str) -> None:
        wait_synced(admin, namespace, names, poll_until)
        for name, (field, sample) in tasks.items():
            deployment = get_deployment(admin, namespace, name)
            task = admin.get(APPTASKS.path(namespace, name))
            body = desired.render(task, rules=AdmissionConfig(allow_run_as_root=True))
            owned = fieldset.applied_by(fieldset.owners(deployment["metadata"]["managedFields"]),
                                        "ssa-controller")
            assert owned == fieldset.body_paths(body), f"{name} {step}: ownership"
            live = value_of(deployment, field)
            if step == "removed":
                assert not holds(sample.first, live, field) or sample.first in (False, 0), (
                    name, live)
            else:  # the restricted settings lie beside the security contexts' fields
                assert holds(getattr(sample, step), live, field), f"{name} {step}: {live}"

    mark = cluster.audit.mark()
    put("first")
    check("first")
    assert applies(mark) == dict.fromkeys(names, 1)

    mark = cluster.audit.mark()
    put("second")
    check("second")
    assert applies(mark) == {name: int(sample.second != sample.first)
                             for name, (_, sample) in tasks.items()}

    mark = cluster.audit.mark()
    put("removed")
    check("removed")
    # A probe is removed whole by a JSON patch (unions.removal): its one write, but where it
    # held a zero value the spec set (initialDelaySeconds: 0), which the object never holds
    # and so no removal takes off the controller's entry: then an apply lets go of it.
    assert applies(mark) == {**dict.fromkeys(names, 1), "livenessprobe": 2}

    put("first")
    check("first")
    mark = cluster.audit.mark()
    for name, (field, sample) in tasks.items():
        patch, kind = foreign_patch(field, sample.foreign)
        admin.patch(DEPLOYMENTS.path(namespace, name), patch, kind, {"fieldManager": "intruder"})

    def unrestored() -> dict[str, Any]:
        values = {name: value_of(get_deployment(admin, namespace, name), field)
                  for name, (field, _) in tasks.items()}
        return {name: value for name, value in values.items()
                if not holds(tasks[name][1].first, value, tasks[name][0])}
    try:
        poll_until(lambda: not unrestored(), timeout=60)
    except PollTimeout:
        raise AssertionError(f"not restored: {unrestored()}") from None
    check("first")
    assert applies(mark) == dict.fromkeys(names, 1)

    def quiet_resyncs() -> bool:
        """Whether two resyncs of every AppTask wrote nothing (Events of the last steps
        may still be on their way: then the next two are watched)."""
        mark, start = cluster.audit.mark(), process.reconciles()
        poll_until(lambda: process.reconciles() >= start + 2 * len(names), timeout=30,
                   message="two resyncs of every AppTask")
        return not cluster.audit.select(mark, user=CONTROLLER, namespace=namespace,
                                        writes=True)
    poll_until(quiet_resyncs, timeout=90, message="resyncs that send nothing")


# --------------------------------------------------------------------------- refusals


def test_affinity_the_server_refuses_is_reported_as_apply_rejected(admin, controller, namespace,
                                                                   poll_until):
    """affinity passes through the CRD (x-kubernetes-preserve-unknown-fields): the API server
    validates it when the Deployment is applied, and its refusal is the status."""
    controller(scoped(namespace))
    term = {"matchExpressions": [{"key": "disk", "operator": "Near", "values": ["ssd"]}]}
    put_apptask(admin, apptask("operator", namespace, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}))
    put_apptask(admin, apptask("unknown", namespace, affinity={"nodeAffinity": {"nearby": 1}}))
    wait_synced(admin, namespace, ["operator", "unknown"], poll_until, reason="ApplyRejected")
    messages = {n: condition(synced(admin, namespace, n), "Synced")["message"]
                for n in ("operator", "unknown")}
    assert '"Near": not a valid selector operator' in messages["operator"]
    assert ".spec.template.spec.affinity.nodeAffinity.nearby: field not declared in schema" \
        in messages["unknown"]
    assert synced(admin, namespace, "unknown")["phase"] == "Invalid"


ASKING = {
    "privileged": {"securityContext": {"privileged": True}},
    "escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "capability": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
    "root": {"podSecurityContext": {"runAsUser": 0}},
    "account": {"serviceAccountName": "admin"},
}


def test_what_the_admission_rules_refuse_is_invalid_and_nothing_is_applied(
        admin, controller, namespace, cluster, poll_until):
    controller(scoped(namespace, admission={"serviceAccountNames": ["web"]}))
    mark = cluster.audit.mark()
    for name, spec in ASKING.items():
        put_apptask(admin, apptask(name, namespace, **spec))
    wait_synced(admin, namespace, list(ASKING), poll_until, reason="InvalidSpec")
    for name in ASKING:
        st = synced(admin, namespace, name)
        assert st["phase"] == "Invalid"
        assert "is not allowed (admission." in condition(st, "Synced")["message"]
    assert cluster.audit.select(mark, user=CONTROLLER, namespace=namespace,
                                resource="deployments") == []


@pytest.mark.parametrize("spec", [
    {"hostNetwork": True}, {"hostPID": True}, {"hostIPC": True},
    {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
    {"readinessProbe": {"periodSeconds": 1}},
])
def test_host_namespaces_host_path_and_handlerless_probes_are_refused_by_the_api(admin,
                                                                                 namespace, spec):
    """No host namespace, no hostPath (pruned, then no source left: refused), no probe
    without a handler: the API server refuses the AppTask (422)."""
    with pytest.raises(ApiError) as refused:
        put_apptask(admin, apptask("host", namespace, **spec))
    assert refused.value.status == 422


def test_a_probes_host_is_not_kept(admin, namespace):
    """The kubelet would probe another host from the node: the schema has no such field."""
    stored = put_apptask(admin, apptask("probe", namespace, livenessProbe={
        "httpGet": {"port": 80, "host": "10.0.0.1"}}))
    assert stored["spec"]["livenessProbe"] == {"httpGet": {"port": 80}}


# --------------------------------------------------------------------------- generated specs

combined_specs = st.fixed_dictionaries({}, optional={
    **{name: st.sampled_from([sample.first, sample.second]) for name, sample in SAMPLES.items()
       if name != "volumeMounts"},
    "env": st.sampled_from(ENV_FROM_FIELD[:2]),
})
"""Specs combining any of the workload fields' values (mounts need their volume: left out)."""


@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=combined_specs)
def test_generated_specs_applied_to_the_server_read_back_in_sync(admin, namespace, spec):
    """What the server stores for any combination of workload fields (defaults filled in,
    zero values left out, quantities canonical) is in sync with the body (no drift: a
    reconcile would send nothing), and its managedFields are exactly the body's paths."""
    task = apptask(f"g-{secrets.token_hex(4)}", namespace, **spec)
    task["metadata"]["uid"] = "5f0c1b1e-0000-4000-8000-000000000001"
    body = desired.render(task, rules=AdmissionConfig(allow_run_as_root=True))
    del body["metadata"]["ownerReferences"]  # no such AppTask: its reference would dangle
    answer = admin.apply(DEPLOYMENTS.path(namespace, task["metadata"]["name"]), body,
                         field_manager="ssa-controller", force=True)
    owned = fieldset.applied_by(fieldset.owners(answer["metadata"]["managedFields"]),
                                "ssa-controller")
    assert owned == fieldset.body_paths(body)
    assert not drift.compute(body, answer, owned)
