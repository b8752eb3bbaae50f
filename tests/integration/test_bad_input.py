"""Bad input against the real API server: generated AppTask specs (hypothesis, derandomized, so
the same specs every run) fed to kube-apiserver while the controller runs, with valid AppTasks
created at the same time.

The server's schema refuses some of them (that is part of the test: refused with 400/422, never
a 5xx); the rest reach the controller. Outcomes are checked against an oracle that does not
trust the controller: the pure renderer (InvalidSpec) and an admin's dry-run apply of the
rendered Deployment (the server's own verdict). Proven:

- the controller never crashes: the process is alive, no reconcile ended in an error (a crashed
  reconcile counts as one in controller_runtime_reconcile_errors_total), no apply outcome `error`;
- each invalid AppTask is phase `Invalid` with a `Synced` condition carrying the reason:
  `InvalidSpec` with the renderer's message (and no apply ever sent), or `ApplyRejected` with the
  server's message for that body;
- a permanently invalid object is not retried more than its backoff allows (audit-log applies
  per object over a window with resyncs every second), its status is written at most once per
  retry (the server may list the same errors in another order) and never for an InvalidSpec;
  a converged one is not applied again (quantities compare as the server stores them);
- every AppTask the server accepts converges (`Synced` True, its Deployment applied), the valid
  ones created alongside reach Ready.
"""

from __future__ import annotations

import collections
import json
import time
from typing import Any

from helpers import CONTROLLER, apptask, condition, get_deployment, scoped
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from ssa_controller.apptask import desired
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import poll_until
from ssa_controller.reconciler import rejected

GENERATED = 45
"""How many distinct generated AppTasks are sent to the server."""
VALID = 5
BACKOFF = {"base": "1s", "factor": 2, "cap": "4s", "jitter": 0}
WINDOW = 12.0
MAX_TRIES = int(WINDOW / 4) + 2
"""Applies of one refused AppTask allowed in WINDOW: one per backoff cap, plus one either end."""

NAME_PART = r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?"
QUANTITY = r"[0-9]{1,4}(\.[0-9]{1,3})?(m|Mi|Gi|Ki|k|M|G|n|u|e[0-9]|Ei)?"

names = st.one_of(
    st.from_regex(rf"\A{NAME_PART}\Z"),
    st.from_regex(r"\A[a-z]{63}\Z"),            # the longest name a label value can hold
    st.from_regex(r"\A[a-z]{64,70}\Z"),          # admitted by the server, too long for a label
    st.from_regex(rf"\A{NAME_PART}\.{NAME_PART}\Z"),
    st.text(min_size=1, max_size=12),            # unicode: the server refuses the name
)
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
env_names = st.one_of(st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,10}\Z"), texts)
env_item = st.fixed_dictionaries({"name": env_names}, optional={"value": texts})
quantities = st.one_of(
    st.from_regex(rf"\A{QUANTITY}\Z"),
    st.sampled_from(["-1", "1e1.5", "999Ei", "1n", "0.001m", "1e18", "abc", ""]),
    st.integers(-3, 2**40),
)
resource_names = st.one_of(st.sampled_from(["cpu", "memory", "example.com/gpu"]), texts)
ports = st.fixed_dictionaries(
    {"containerPort": st.one_of(st.integers(1, 65535), st.sampled_from([0, 80, 65536]))},
    optional={"protocol": st.sampled_from(["TCP", "UDP", "SCTP", "HTTP"]),
              "name": st.one_of(st.from_regex(r"\A[a-z]{1,15}\Z"),
                                st.sampled_from(["HTTP_X", "x" * 16, ""]))})
specs = st.fixed_dictionaries(
    {"image": st.one_of(st.just("nginx:1.25"), texts)},
    optional={
        # never a large valid count: kube-controller-manager would create that many pods
        "replicas": st.one_of(st.integers(0, 2), st.sampled_from([-1, 2**31, 2**63, "2"])),
        "command": st.lists(texts, max_size=3),
        "args": st.one_of(st.lists(texts, max_size=3), st.just("not-a-list")),
        "env": st.one_of(st.lists(env_item, max_size=5, unique_by=lambda e: e["name"]),
                         st.lists(env_item, min_size=2, max_size=4)),  # may repeat a name
        "ports": st.lists(ports, max_size=3),
        "resources": st.fixed_dictionaries({}, optional={
            "requests": st.dictionaries(resource_names, quantities, max_size=2),
            "limits": st.dictionaries(resource_names, quantities, max_size=2)}),
        "labels": st.one_of(st.dictionaries(st.one_of(st.from_regex(rf"\A{NAME_PART}\Z"), texts),
                                            texts, max_size=3),
                            st.just({desired.NAME_LABEL: "mine"})),
        "annotations": st.dictionaries(texts, texts, max_size=3),
    })


def generated_apptasks(count: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` distinct (name, spec) pairs, the same every run (derandomized), starting with the
    hand-picked edge cases."""
    drawn: list[tuple[str, dict[str, Any]]] = []

    @settings(max_examples=count * 3, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(name=names, spec=specs)
    @example(name="a" * 63, spec={"image": "nginx:1.25", "replicas": 1,
                                  "env": [{"name": f"VAR_{i}", "value": "ü" * 3}
                                          for i in range(500)]})
    @example(name="b" * 64, spec={"image": "nginx:1.25"})
    @example(name="dup-env", spec={"image": "nginx:1.25", "env": [{"name": "A"}, {"name": "A"}]})
    @example(name="dup-ports", spec={"image": "nginx:1.25", "ports": [{"containerPort": 80},
                                                                       {"containerPort": 80}]})
    @example(name="huge", spec={"image": "nginx:1.25",
                                "resources": {"limits": {"memory": "999Ei"}}})
    @example(name="tiny", spec={"image": "nginx:1.25", "resources": {"requests": {"cpu": "1n"}}})
    @example(name="negative", spec={"image": "nginx:1.25",
                                    "resources": {"requests": {"cpu": "-1"}}})
    @example(name="odd-port", spec={"image": "nginx:1.25", "ports": [{"containerPort": 65535,
                                                                      "protocol": "SCTP"}]})
    @example(name="port-zero", spec={"image": "nginx:1.25", "ports": [{"containerPort": 0}]})
    @example(name="unicode", spec={"image": "nginx:1.25", "env": [{"name": "GRÜSSE", "value": "✓"}],
                                   "labels": {"ключ": "значение"}})
    def collect(name: str, spec: dict[str, Any]) -> None:
        drawn.append((name, spec))

    collect()
    seen: set[str] = set()
    distinct = []
    for name, spec in drawn:
        if name not in seen:
            seen.add(name)
            distinct.append((name, spec))
    assert len(distinct) >= count, f"only {len(distinct)} distinct names generated"
    return distinct[:count]


def create(admin: Kube, namespace: str, name: str, spec: dict[str, Any]) -> ApiError | None:
    body = {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    try:
        admin.create(APPTASKS.path(namespace), body)
    except ApiError as exc:
        return exc
    return None


def oracle(admin: Kube, obj: dict[str, Any]) -> tuple[str, str]:
    """What the controller must report for `obj`, decided without it: ("InvalidSpec", the
    renderer's message), ("ApplyRejected", the server's message for a dry-run apply of the
    rendered body) or ("Synced", "")."""
    try:
        body = desired.render(obj)
    except desired.InvalidSpec as exc:
        return "InvalidSpec", str(exc)
    meta = obj["metadata"]
    try:
        admin.apply(DEPLOYMENTS.path(meta["namespace"], meta["name"]), body,
                    field_manager="tests-oracle", force=True, dry_run=True)
    except ApiError as exc:
        assert rejected(exc), f"the oracle's dry-run failed otherwise: {exc}"
        return "ApplyRejected", exc.message
    return "Synced", ""


def same_message(reported: str, expected: str) -> bool:
    """Whether the reported message is the expected one. The server lists several field errors
    in map order, which varies between requests: then the same errors in another order."""
    if reported == expected:
        return True
    head = expected.split(": [", 1)[0]
    return reported.startswith(head) and collections.Counter(reported) \
        == collections.Counter(expected)


def settled(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    synced = condition(status, "Synced")
    return (status.get("observedGeneration") == obj["metadata"]["generation"]
            and (status.get("phase") == "Invalid" or synced.get("status") == "True"))


def test_generated_specs_never_crash_the_controller_and_invalid_ones_are_reported(
        admin, controller, namespace, cluster):
    cases = generated_apptasks(GENERATED)
    proc = controller(scoped(namespace, backoff=BACKOFF, resync={"period": "1s", "jitter": 0},
                             rateLimit={"qps": 200, "burst": 200}))
    started = cluster.audit.mark()

    refused: dict[str, ApiError] = {}
    valid = [f"valid-{i}" for i in range(VALID)]
    for i, (name, spec) in enumerate(cases):
        turn, at = divmod(i, GENERATED // VALID)
        if at == 0 and turn < VALID:  # the valid ones go in among the generated ones
            admin.create(APPTASKS.path(namespace), apptask(valid[turn], namespace, replicas=1))
        error = create(admin, namespace, name, spec)
        if error is not None:
            refused[name] = error
    admitted = [name for name, _ in cases if name not in refused]
    # The generator covers both sides of the schema; the server refuses as a validation error.
    assert refused and len(admitted) >= GENERATED // 3, (len(refused), len(admitted))
    assert all(e.status in (400, 422) for e in refused.values()), {
        n: str(e) for n, e in refused.items() if e.status not in (400, 422)}

    def listed() -> dict[str, dict[str, Any]]:
        items = admin.list(APPTASKS.path(namespace))["items"]
        return {o["metadata"]["name"]: o for o in items}

    deadline = time.monotonic() + 120
    while True:
        objects = listed()
        waiting = {n: o.get("status") for n, o in objects.items() if not settled(o)}
        if not waiting and len(objects) == len(admitted) + VALID:
            break
        assert time.monotonic() < deadline, f"not settled after 120s: {waiting}"
        time.sleep(0.5)

    outcomes: dict[str, str] = {}
    for name in admitted:
        obj = objects[name]
        status = obj["status"]
        synced = condition(status, "Synced")
        reason, message = oracle(admin, obj)
        outcomes[name] = reason
        if reason == "Synced":
            assert synced["status"] == "True", (name, status)
            assert status["phase"] != "Invalid", (name, status)
            deployment = get_deployment(admin, namespace, name)
            assert deployment is not None, name
            assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] \
                == obj["spec"]["image"]
        else:
            assert status["phase"] == "Invalid", (name, status)
            assert (synced["status"], synced["reason"]) == ("False", reason), (name, status)
            assert same_message(synced["message"], message), (name, synced["message"], message)
    assert "Synced" in outcomes.values()
    assert {"InvalidSpec", "ApplyRejected"} <= set(outcomes.values()), outcomes

    # Specs the renderer refuses never cost an apply.
    for name, reason in outcomes.items():
        if reason == "InvalidSpec":
            assert cluster.audit.count(started, user=CONTROLLER, resource="deployments",
                                       name=name, writes=True) == 0, name

    # The valid AppTasks created among them converge.
    for good in valid:
        poll_until(lambda g=good: (admin.get(APPTASKS.path(namespace, g)).get("status") or {})
                   .get("phase") == "Ready", timeout=60, message=f"{good} Ready")

    # Refused generations are retried only as the backoff allows, resyncs every second or not;
    # their unchanged statuses are not written again; converged ones are not applied again
    # (a quantity the server rounds, "1n" stored as "1m", is not drift).
    mark = cluster.audit.mark()
    time.sleep(WINDOW)
    retries: list[int] = []
    for name, reason in outcomes.items():
        applies = cluster.audit.count(mark, user=CONTROLLER, resource="deployments", name=name,
                                      writes=True)
        limit = MAX_TRIES if reason == "ApplyRejected" else 0
        if reason == "ApplyRejected":
            retries.append(applies)
        assert applies <= limit, f"{name} ({reason}): {applies} applies in {WINDOW}s"
        if reason != "Synced":  # a converged one's readiness may still change its status
            # A retry's answer may list the same field errors in another (map) order, and that
            # message is written: at most one status write per retry.
            status_writes = cluster.audit.count(mark, user=CONTROLLER, resource="apptasks",
                                                name=name, writes=True)
            assert status_writes <= applies, f"{name} ({reason}): {status_writes} status writes"

    # Never crashed: alive, no reconcile ended in an error (a crash counts as one).
    assert proc.proc.poll() is None
    assert proc.metric("controller_runtime_reconcile_errors_total{") == 0
    assert proc.metric('ssa_controller_applies_total{outcome="error"}') == 0
    assert proc.metric('ssa_controller_applies_total{outcome="invalid"}') > 0
    print(json.dumps({"generated": GENERATED, "refused_by_schema": len(refused),
                      "outcomes": {r: list(outcomes.values()).count(r)
                                   for r in sorted(set(outcomes.values()))},
                      f"applies_per_refused_apptask_in_{WINDOW:g}s": sorted(retries)}))
