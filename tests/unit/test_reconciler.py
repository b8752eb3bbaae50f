"""Unit tests for ssa_controller.reconciler: the decisions of one reconcile.

The pure parts (which refusals count as rejections, conflict summaries, the memory of refused
generations) are tested directly. The reconcile itself runs with real caches, a real
FightTracker and a fake clock against a recording stand-in for the Kube client at the I/O
boundary: these tests check which requests a decision sends, not what the API server does with
them (the integration tests do that against a real kube-apiserver).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from ssa_controller.apptask import adopt, desired, diff, drift, status
from ssa_controller.apptask.fights import FightTracker
from ssa_controller.apptask.rejections import Rejections, deployment_version
from ssa_controller.apptask.settle import StatusSettle
from ssa_controller.client.wire import JSON_PATCH, ApiError
from ssa_controller.memory import Memory
from ssa_controller.reconciler import (
    CREATE_ONLY,
    VANISHED_GRACE,
    CreatePrecondition,
    Reconciler,
    conflict_summary,
    item_backoff,
    rejected,
    transient,
)
from ssa_controller.runtime import fieldset
from ssa_controller.runtime.backoff import ItemBackoff
from ssa_controller.runtime.objectkey import ObjectKey
from ssa_controller.runtime.store import Writer
from ssa_controller.settings.config import ApplyConfig, BackoffConfig, Config

Obj = dict[str, Any]
KEY = ObjectKey("demo", "web")
MANAGER = "ssa-controller"
HANDOFF = "ssa-controller-handoff"
BASE, CAP = 1.0, 4.0
REPLICAS = ("f:spec", "f:replicas")
IMMUTABLE = ApiError(422, "Invalid", 'Deployment.apps "web" is invalid: spec.selector: Invalid '
                     "value: ...: field is immutable",
                     {"details": {"causes": [{"field": "spec.selector"}]}})
TEST_FAILED = ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                       "request", {"details": {}})
"""kube-apiserver's answer to a JSON patch whose test operation failed (v1.20.2)."""
NO_PRECONDITION = ApiError(500, "", "resourceVersion should not be set on objects to be created")
UNAVAILABLE = ApiError(503, "ServiceUnavailable", "busy")


# --------------------------------------------------------------------------- pure decisions


@pytest.mark.parametrize("error, refused, passing", [
    (ApiError(400, "BadRequest", "admission webhook denied the request"), True, False),
    (IMMUTABLE, True, False),
    (ApiError(500, "", "failed to create typed patch object: duplicate entries"), True, False),
    (ApiError(500, "InternalError", "etcdserver: request timed out"), False, True),
    (ApiError(409, "Conflict", "Apply failed with 1 conflict"), False, False),
    (ApiError(403, "Forbidden", "exceeded quota"), False, False),
    (ApiError(0, "ConnectionError", "refused"), False, True),
    (ApiError(429, "TooManyRequests", "slow down", retry_after=1.0), False, True),
    (ApiError(502, "BadGateway", ""), False, True),
    (UNAVAILABLE, False, True),
    (ApiError(504, "GatewayTimeout", ""), False, True),
])
def test_which_failures_are_refusals_of_the_body_and_which_may_pass_by_themselves(
        error: ApiError, refused: bool, passing: bool) -> None:
    assert (rejected(error), transient(error)) == (refused, passing)


def test_a_conflict_is_summarised_by_manager_and_fields() -> None:
    causes = [{"message": 'conflict with "kubectl" using apps/v1', "field": ".spec.replicas"},
              {"message": 'conflict with "kubectl" using apps/v1', "field": ".spec.paused"},
              {"message": 'conflict with "hpa" using apps/v1', "field": ".spec.replicas"}]
    error = ApiError(409, "Conflict", "Apply failed", {"details": {"causes": causes}})
    assert conflict_summary(error) == ('"hpa" over .spec.replicas; '
                                       '"kubectl" over .spec.replicas, .spec.paused')
    assert conflict_summary(ApiError(409, "Conflict", "plain")) == "plain"


def test_item_backoff_follows_the_configuration() -> None:
    backoff = item_backoff(BackoffConfig(base=0.25, factor=4.0, cap=4.0, jitter=0.0))
    assert [backoff.when("k") for _ in range(4)] == [0.25, 1.0, 4.0, 4.0]
    assert 0.45 <= item_backoff(BackoffConfig()).when("k") <= 0.5


def cached(uid: str = "d1", generation: int = 1) -> Obj:
    return {"metadata": {"uid": uid, "generation": generation}}


@pytest.fixture
def rejections() -> Rejections:
    return Rejections(ItemBackoff(BASE, 2.0, CAP, 0.0))


def test_a_refused_generation_waits_with_capped_exponential_backoff(
        rejections: Rejections) -> None:
    rejection, delays = None, []
    for t in range(5):
        rejection = rejections.refused(rejection, 1, None, "refused", float(t))
        delays.append(rejection.retry_at - t)
    assert delays == [BASE, 2 * BASE, 4 * BASE, CAP, CAP]


def test_a_resync_before_the_retry_is_due_waits(rejections: Rejections) -> None:
    rejection = rejections.refused(None, 1, cached(), "refused", 10.0)
    assert rejection.wait(cached(), 10.4) == pytest.approx(BASE - 0.4)
    assert rejection.wait(cached(), 10.0 + BASE) == 0.0


def test_a_new_generation_starts_the_backoff_afresh(rejections: Rejections) -> None:
    first = rejections.refused(None, 1, None, "refused", 0.0)
    second = rejections.refused(first, 1, None, "refused", 1.0)
    assert rejections.refused(second, 2, None, "refused", 1.2).retry_at == 1.2 + BASE


@pytest.mark.parametrize("now_cached", [None, cached(generation=2), cached(uid="d2")],
                         ids=["deleted", "spec changed", "re-created"])
def test_a_changed_deployment_is_tried_at_once(rejections: Rejections,
                                               now_cached: Obj | None) -> None:
    rejection = rejections.refused(None, 1, cached(), "refused", 0.0)
    assert rejection.wait(now_cached, 0.1) == 0.0


def test_a_deployment_status_change_is_no_reason_to_retry(rejections: Rejections) -> None:
    rejection = rejections.refused(None, 1, cached(), "refused", 0.0)
    moved = {**cached(), "status": {"readyReplicas": 1}}
    assert rejection.wait(moved, 0.1) > 0
    assert deployment_version(moved) == deployment_version(cached())


# --------------------------------------------------------------------------- the reconcile


class RecordingKube:
    """Answers like an API server would, records every request, fails as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[Any, ...]] = []
        self.failures: dict[str, ApiError] = {}
        """Request kind (apply, dry-run, handoff, status, get) -> the error to raise."""
        self.existing: Obj | None = None
        """What a GET of the Deployment finds (None: 404)."""
        self.apptask: Obj = {}
        self.applied: Obj = {}
        """The answer to the last apply, as its watch event will bring it."""
        self.existing_service: Obj | None = None
        """The Service of the AppTask's name on the server (None: there is none)."""
        self.create_only_refused: ApiError | None = None
        """How a server refusing the CREATE_ONLY precondition answers it (None: honours it)."""
        self.meanwhile: dict[str, Callable[[], None]] = {}
        """Request kind -> what happens elsewhere (a watch event) once the server has answered
        it and before the answer is back."""
        self._revision = 100

    def _fail(self, kind: str) -> None:
        if kind in self.failures:
            raise self.failures[kind]

    def next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def apply(self, path: str, body: Obj, *, field_manager: str, force: bool,
              dry_run: bool = False) -> Obj:
        create_only = body["metadata"].get("resourceVersion") == CREATE_ONLY
        kind = "dry-run" if dry_run else "handoff" if field_manager == HANDOFF else \
            "create" if create_only else "apply"
        existing = self.existing
        if body["kind"] == "Service":
            kind, existing = f"service-{kind}", self.existing_service
        self.requests.append((kind, field_manager, force, copy.deepcopy(body)))
        if create_only and self.create_only_refused is not None:
            raise self.create_only_refused
        if create_only and existing is not None:
            raise ApiError(409, "Conflict", "the object has been modified")
        self._fail("apply" if kind == "create" else kind)
        answer = copy.deepcopy(body)
        sent = {k: v for k, v in body["metadata"].items() if k != "resourceVersion"}
        answer["metadata"].update(  # a precondition is no field of the object
            uid="d1", generation=1, resourceVersion=self.next_revision(),
            managedFields=[managed(field_manager, fieldset.body_paths({**body, "metadata": sent}))])
        self.applied = copy.deepcopy(answer)
        self._answered(kind)
        return answer

    def get(self, path: str, params: Obj | None = None) -> Obj:
        self.requests.append(("get", path))
        self._fail("get")
        existing = self.existing_service if "/services/" in path else self.existing
        if existing is None:
            raise ApiError(404, "NotFound", "not found")
        return copy.deepcopy(existing)

    def request(self, method: str, path: str, *, body: Any = None) -> Obj:
        assert method == "DELETE"
        self.requests.append(("delete", path, copy.deepcopy(body)))
        self._fail("delete")
        return {}

    def patch(self, path: str, body: Any, content_type: str, params: Obj | None = None) -> Obj:
        assert content_type == JSON_PATCH
        kind = "status" if path.endswith("/status") else "managedFields"
        self.requests.append((kind, path, copy.deepcopy(body)))
        self._fail(kind)
        if kind == "managedFields":
            return copy.deepcopy(self.existing or {})
        test, add = body
        if test["value"] != self.apptask["metadata"]["uid"]:  # as kube-apiserver answers it
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in "
                           "our request", {"details": {}})
        answer = copy.deepcopy(self.apptask)
        answer["metadata"]["resourceVersion"] = self.next_revision()
        self._answered(kind)
        return {**answer, "status": add["value"]}

    def _answered(self, kind: str) -> None:
        if kind in self.meanwhile:
            self.meanwhile.pop(kind)()

    def kinds(self) -> list[str]:
        return [request[0] for request in self.requests]


class RecordingEvents:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.notes: list[str] = []

    def record(self, regarding: Any, type_: str, reason: str, action: str, note: str) -> None:
        self.reasons.append(reason)
        self.notes.append(note)


def managed(manager: str, paths: frozenset[fieldset.Path], operation: str = "Apply") -> Obj:
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": fieldset.to_fields(paths)}


def apptask(generation: int = 1, **spec: Any) -> Obj:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": "web", "namespace": "demo", "uid": "a1",
                         "generation": generation},
            "spec": {"image": "nginx:1.25", **spec}}


def deployment(task: Obj, *others: Obj, generation: int = 1, **changes: Any) -> Obj:
    """The Deployment as the controller applied it for `task` (then changed by `changes` in
    its spec, and co-owned by the `others` managedFields entries), rolled out."""
    body = desired.render(task)
    live = copy.deepcopy(body)
    live["spec"] = {"replicas": 1, **live["spec"], **changes}
    live["metadata"].update(uid="d1", generation=generation,
                            managedFields=[managed(MANAGER, fieldset.body_paths(body)), *others])
    live["status"] = {"observedGeneration": generation, "replicas": live["spec"]["replicas"],
                      "updatedReplicas": live["spec"]["replicas"]}
    return live


class Harness:
    """A Reconciler over real caches and a FightTracker, a fake clock and a RecordingKube."""

    def __init__(self, config: Config | None = None) -> None:
        self.now = 1000.0
        self.kube = RecordingKube()
        self.apptask_cache, self.deployment_cache = Writer(), Writer(with_owners=True)
        self.service_cache = Writer(with_owners=True)
        self.apptasks, self.deployments = self.apptask_cache.store, self.deployment_cache.store
        self.fights = FightTracker(threshold=2, window=60.0, backoff_base=10.0, backoff_cap=80.0)
        self.events = RecordingEvents()
        self.reconciler = Reconciler(
            config or Config(backoff=BackoffConfig(base=BASE, factor=2.0, cap=CAP, jitter=0.0)),
            self.kube, self.apptasks, self.deployments, self.service_cache.store, self.fights,  # type: ignore[arg-type]
            self.events, apptask_answers=self.apptask_cache.answers,
            deployment_answers=self.deployment_cache.answers,
            service_answers=self.service_cache.answers,
            clock=lambda: self.now, wallclock=lambda: "2026-01-01T00:00:00Z")
        self.reconciler.settling.settle = 0.0

    def given(self, task: Obj, live: Obj | None = None) -> None:
        """The watch delivers `task` (and `live`) as the newest versions."""
        task["metadata"]["resourceVersion"] = self.kube.next_revision()
        self.kube.apptask = task
        self.watched(task)
        if live is not None:
            self.deployment_changed(live)

    def watched(self, task: Obj) -> None:
        """The AppTask watch delivers `task` (the controller's handler: its memory is made)."""
        self.apptask_cache.put(task)
        self.reconciler.memories.seen(ObjectKey.of(task), task)

    def deleted(self, task: Obj) -> None:
        """The AppTask watch shows `task` deleted (its memory is dropped)."""
        gone = copy.deepcopy(task)  # as the DELETED event brings it: at the deletion's revision
        gone["metadata"]["resourceVersion"] = self.kube.next_revision()
        self.apptask_cache.delete(gone)
        self.reconciler.memories.seen(ObjectKey.of(gone), None)

    def memory(self) -> Memory:
        """What the reconciler remembers of the AppTask KEY."""
        task = self.apptasks.get(KEY)
        assert task is not None
        return self.reconciler.memories.of(KEY, task)

    def fought(self, *at: tuple[str, float]) -> None:
        """The fight's history of the AppTask KEY (generation 1): ("applied", seconds ago) by
        the controller, ("taken", seconds ago) by a rival over .spec.replicas."""
        memory = self.memory()
        for what, ago in at:
            if what == "applied":
                memory.fight = self.fights.applied(memory.fight, 1, self.now - ago)
            else:
                self.fights.took_back(memory.fight, 1, ("rival",), (".spec.replicas",),
                                      self.now - ago)

    def deployment_changed(self, live: Obj) -> None:
        live["metadata"]["resourceVersion"] = self.kube.next_revision()
        self.deployment_cache.put(live)

    def reconcile(self, after: float = 0.0):  # noqa: ANN201 - a Result
        self.now += after
        self.kube.requests.clear()
        return self.reconciler.reconcile(KEY)


@pytest.mark.parametrize("when", ["read", "create", "status"])
def test_a_reconcile_finishing_after_its_apptask_was_deleted_leaves_no_memory(
        when: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The AppTask's deletion is seen right after the reconcile read it from the cache, or
    while its apply or its status write is in flight: what the reconcile remembers after that
    (the comparison, the fight, the status write) goes with it, instead of staying for a key
    nobody reconciles again."""
    harness = Harness()
    harness.given(apptask())
    if when == "read":
        read = harness.apptasks.get

        def read_then_deleted(key: ObjectKey) -> Obj | None:
            found = read(key)
            monkeypatch.undo()
            harness.deleted(harness.kube.apptask)
            return found
        monkeypatch.setattr(harness.apptasks, "get", read_then_deleted)
    else:
        harness.kube.meanwhile[when] = lambda: harness.deleted(harness.kube.apptask)
    assert harness.reconcile().outcome == "applied"
    assert harness.kube.kinds() == ["create", "status"]
    assert KEY not in harness.reconciler.memories and len(harness.reconciler.memories) == 0


def test_an_apptask_created_again_while_the_old_ones_reconcile_finishes_starts_afresh() -> None:
    """Deleted and created again under its name (another uid, the same generation 1) while the
    old AppTask's status write is in flight: the new one inherits nothing of the old one."""
    harness = Harness()
    harness.given(apptask())
    again = apptask()
    again["metadata"]["uid"] = "a2"

    def recreated() -> None:
        harness.deleted(harness.kube.apptask)
        harness.given(again)
    harness.kube.meanwhile["status"] = recreated
    harness.reconcile()
    assert harness.memory() == Memory(KEY, "a2")


def test_a_failed_status_write_keeps_the_apply_outcome_and_the_fight() -> None:
    harness = Harness()
    task = apptask(replicas=2)
    harness.given(task, deployment(task, managed("rival", frozenset({REPLICAS}), "Update"),
                                   replicas=5))
    harness.fought(("applied", 20.0), ("taken", 19.9),
                   ("applied", 15.0))  # the damping delay (10 s) is over
    harness.kube.failures["status"] = ApiError(500, "InternalError", "etcd timeout")
    result = harness.reconcile()
    assert harness.kube.kinds() == ["apply", "status"]
    assert (result.outcome, result.fight_detected) == ("applied", True)
    assert result.error is harness.kube.failures["status"]


def test_a_status_write_failing_after_another_failure_keeps_the_first_error() -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures.update(apply=ApiError(403, "Forbidden", "exceeded quota"),
                                 status=ApiError(500, "InternalError", "etcd timeout"))
    result = harness.reconcile()
    assert result.outcome == "error" and result.error is harness.kube.failures["apply"]


def test_a_throttled_status_write_after_another_failure_waits_its_retry_after() -> None:
    """The first error is kept, unless the later one carries a longer Retry-After: the retry
    must honour the longest wait the server asked for."""
    harness = Harness()
    harness.reconciler.degraded_after = 0.0  # the transport error is reported at once
    harness.given(apptask())
    throttled = ApiError(429, "TooManyRequests", "slow down", retry_after=2.0)
    harness.kube.failures.update(apply=ApiError(0, "TransportError", "connection reset"),
                                 status=throttled)
    result = harness.reconcile()
    assert result.outcome == "error" and result.error is throttled


def statuses(harness: Harness) -> int:
    return harness.kube.kinds().count("status")


def test_transient_failures_write_no_status_until_they_last_degraded_after() -> None:
    harness = Harness()
    assert harness.reconciler.degraded_after == 30.0  # BackoffConfig's default
    harness.given(apptask())
    harness.kube.failures["apply"] = UNAVAILABLE
    for after in (0.0, 10.0, 19.9):  # 29.9 s of failures
        result = harness.reconcile(after)
        assert result.error is UNAVAILABLE and statuses(harness) == 0
    harness.reconcile(0.1)
    written = harness.apptasks.get(KEY)["status"]
    assert statuses(harness) == 1 and written["phase"] == "Degraded"
    assert any("503" in c["message"] for c in written["conditions"])


@pytest.mark.parametrize("then_failing", [{}, {"status": UNAVAILABLE}],
                         ids=["success", "applied-but-status-failed"])
def test_an_apply_that_passes_starts_the_grace_of_the_next_failures_afresh(
        then_failing: dict[str, ApiError]) -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures = {"apply": UNAVAILABLE}
    harness.reconcile()
    harness.kube.failures = dict(then_failing)
    assert harness.reconcile(29.0).outcome == "applied"
    harness.given(apptask(generation=2, image="nginx:1.26"))
    harness.kube.failures = {"apply": UNAVAILABLE}
    assert harness.reconcile(1.0).error is UNAVAILABLE  # 30 s after the first failure
    assert statuses(harness) == 0


def test_an_apptask_created_again_under_its_name_does_not_inherit_its_failures() -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures["apply"] = UNAVAILABLE
    harness.reconcile()
    again = apptask()
    again["metadata"]["uid"] = "a2"  # a relist after a watch gap: no DELETED event between
    harness.given(again)
    harness.reconcile(30.0)
    assert statuses(harness) == 0


def test_a_failure_that_will_not_pass_by_itself_is_reported_at_once() -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures["apply"] = ApiError(403, "Forbidden", "deployments is forbidden")
    harness.reconcile()
    assert statuses(harness) == 1
    assert harness.apptasks.get(KEY)["status"]["phase"] == "Degraded"


def test_a_refused_generation_is_retried_only_with_backoff() -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures["apply"] = IMMUTABLE
    first = harness.reconcile()
    # Refused before any creation passed: perhaps for the precondition, checked without it.
    assert harness.kube.kinds() == ["create", "get", "apply", "status"]
    assert (first.outcome, first.requeue_after, first.error) == ("invalid", BASE, None)
    assert harness.reconciler.creation.sent
    assert "ApplyRejected" in harness.events.reasons
    resync = harness.reconcile(after=0.4)
    assert harness.kube.kinds() == []
    assert (resync.outcome, resync.requeue_after) == ("invalid", pytest.approx(BASE - 0.4))
    due = harness.reconcile(after=BASE - 0.4)
    assert harness.kube.kinds()[:1] == ["create"]
    assert due.requeue_after == 2 * BASE


def test_a_refused_generation_is_retried_at_once_when_its_deployment_changes() -> None:
    harness = Harness()
    before = apptask(image="nginx:1.24")
    harness.given(apptask(), deployment(before))
    harness.kube.failures["apply"] = ApiError(400, "BadRequest", "admission webhook denied it")
    assert harness.reconcile().outcome == "invalid"
    assert harness.kube.kinds() == ["apply", "status"]
    harness.reconcile(after=0.1)
    assert harness.kube.kinds() == []
    harness.deployment_changed(deployment(before, generation=2))
    assert harness.reconcile(after=0.1).outcome == "invalid"
    assert harness.kube.kinds() == ["apply"]


def test_a_new_generation_of_a_refused_apptask_is_applied_at_once() -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures["apply"] = IMMUTABLE
    harness.reconcile()
    del harness.kube.failures["apply"]
    harness.given(apptask(generation=2, image="nginx:1.27"))
    assert harness.reconcile(after=0.1).outcome == "applied"
    assert harness.memory().rejection is None


def test_an_apptask_created_again_under_its_name_is_not_held_by_the_old_ones_refusal() -> None:
    harness = Harness()
    harness.given(apptask())
    harness.kube.failures["apply"] = IMMUTABLE
    harness.reconcile()
    del harness.kube.failures["apply"]
    again = apptask()
    again["metadata"]["uid"] = "a2"  # the same generation 1, another AppTask
    harness.given(again)
    assert harness.reconcile(after=0.1).outcome == "applied"


def test_releasing_replicas_hands_them_off_first() -> None:
    harness = Harness()
    harness.given(apptask(), deployment(apptask(replicas=3)))
    assert harness.reconcile().outcome == "applied"
    [handoff, release] = [r for r in harness.kube.requests if r[0] in ("handoff", "apply")]
    assert handoff == ("handoff", HANDOFF, False, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo"}, "spec": {"replicas": 3}})
    assert release[:2] == ("apply", MANAGER) and "replicas" not in release[3]["spec"]


def test_replicas_another_manager_owns_are_released_without_a_handoff() -> None:
    harness = Harness()
    harness.given(apptask(), deployment(apptask(replicas=3),
                                        managed("hpa", frozenset({REPLICAS}), "Update")))
    harness.reconcile()
    assert "handoff" not in harness.kube.kinds() and "apply" in harness.kube.kinds()


def test_a_failed_handoff_holds_the_release_back() -> None:
    harness = Harness()
    harness.given(apptask(), deployment(apptask(replicas=3)))
    harness.kube.failures["handoff"] = ApiError(409, "Conflict", "Apply failed with 1 conflict")
    result = harness.reconcile()
    assert harness.kube.kinds()[:1] == ["handoff"] and "apply" not in harness.kube.kinds()
    assert result.outcome == "conflict" and result.error is not None


def foreign(task: Obj) -> Obj:
    """An unowned Deployment of the AppTask's name, made by `kubectl create`."""
    live = deployment(task)
    live["metadata"].update(labels={}, resourceVersion="50")
    del live["metadata"]["ownerReferences"]
    live["metadata"]["managedFields"] = [
        managed("kubectl-create", fieldset.body_paths(desired.render(task)), "Update")]
    return live


ADOPTING = Config(apply=ApplyConfig(adopt_existing=True),
                  backoff=BackoffConfig(base=BASE, factor=2.0, cap=CAP, jitter=0.0))


def test_adoption_moves_managed_fields_only_after_a_successful_dry_run() -> None:
    harness = Harness(ADOPTING)
    harness.given(apptask())
    harness.kube.existing = foreign(apptask())
    assert harness.reconcile().outcome == "applied"
    assert harness.kube.kinds()[:6] == ["create", "get", "dry-run", "get", "managedFields",
                                        "apply"]


def test_a_refused_adoption_leaves_the_managed_fields_alone() -> None:
    harness = Harness(ADOPTING)
    harness.given(apptask())
    harness.kube.existing = foreign(apptask())
    harness.kube.failures["dry-run"] = IMMUTABLE
    result = harness.reconcile()
    assert harness.kube.kinds() == ["create", "get", "dry-run", "status"]
    assert (result.outcome, result.requeue_after) == ("invalid", BASE)


def test_an_adoption_that_loses_a_race_is_tried_again_without_a_report() -> None:
    """Issue 24 item 4: the Deployment changed between the read and the ownership move (its
    rollout, an HPA): the guard's test fails (422). A conflict, retried with the normal
    backoff: no Invalid phase, no Warning Event, no slow retry."""
    harness = Harness(ADOPTING)
    harness.given(apptask())
    harness.kube.existing = foreign(apptask())
    harness.kube.failures["managedFields"] = TEST_FAILED
    result = harness.reconcile()
    assert harness.kube.kinds() == ["create", "get", "dry-run", "get", "managedFields"]
    assert result.outcome == "conflict" and result.error is not None
    assert (result.error.reason, result.requeue_after) == (adopt.RACED, None)
    assert (harness.events.reasons, harness.memory().rejection) == ([], None)
    del harness.kube.failures["managedFields"]
    assert harness.reconcile(after=BASE).outcome == "applied"


def test_a_new_generation_is_applied_at_once_during_a_damped_fight() -> None:
    harness = Harness()
    task = apptask(replicas=2)
    rival = managed("rival", frozenset({REPLICAS}), "Update")
    harness.given(task, deployment(task, rival, replicas=5))
    harness.fought(("applied", 2.0), ("taken", 1.9), ("applied", 1.0), ("taken", 0.9))
    damped = harness.reconcile()  # 1 s after the last apply; the damping delay is 10 s
    assert (damped.outcome, harness.kube.kinds()) == ("conflict", ["status"])
    fixed = apptask(generation=2, replicas=2, image="nginx:1.27")
    harness.given(fixed)
    assert harness.reconcile(after=0.1).outcome == "applied"
    assert harness.kube.kinds()[0] == "apply"


def test_the_controllers_own_apply_and_the_deployment_controllers_update_cost_no_comparison(
        monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[ObjectKey] = []
    compute = drift.compute

    def counted(*args: Any, **kwargs: Any) -> Any:
        compared.append(KEY)
        return compute(*args, **kwargs)

    monkeypatch.setattr(drift, "compute", counted)
    harness = Harness()
    harness.given(apptask(replicas=2))
    assert harness.reconcile().outcome == "applied"
    harness.deployment_cache.put(harness.kube.applied)  # the watch delivers the apply's answer
    assert harness.reconcile().outcome == "unchanged"
    observed = copy.deepcopy(harness.kube.applied)  # then the Deployment controller's update
    observed["status"] = {"observedGeneration": 1, "replicas": 2}
    observed["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    observed["metadata"]["managedFields"].append(managed("kube-controller-manager", frozenset({
        ("f:metadata", "f:annotations", "f:deployment.kubernetes.io/revision"),
        ("f:status", "f:observedGeneration"), ("f:status", "f:replicas")}), "Update"))
    harness.deployment_changed(observed)
    assert harness.reconcile().outcome == "unchanged"
    assert (harness.kube.kinds(), compared) == (["status"], [])  # its Ready message moved
    rival = copy.deepcopy(observed)  # a later change is still compared, and undone
    rival["spec"]["replicas"] = 5
    rival["metadata"]["generation"] = 2
    ours = fieldset.owners(rival["metadata"]["managedFields"])[(MANAGER, "Apply")]
    rival["metadata"]["managedFields"] = [  # as the server records it: the field changes hands
        managed(MANAGER, ours - {REPLICAS}), managed("rival", frozenset({REPLICAS}), "Update")]
    harness.deployment_changed(rival)
    assert harness.reconcile().outcome == "applied"
    assert (harness.kube.kinds()[:1], compared) == (["apply"], [KEY])


def test_a_resync_over_a_converged_apptask_renders_nothing_and_computes_no_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25, section 4: while the remembered comparison holds, the desired Deployment is
    not rendered; while the AppTask's and the Deployment's versions are those the status was
    found current for, the status is not computed."""
    calls: list[str] = []

    def counted(module: Any, name: str) -> None:
        original = getattr(module, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, call)
    harness = Harness()
    task = apptask(replicas=0)
    moved = deployment(task, replicas=0)  # the Deployment controller's next update: status
    moved["status"]["conditions"] = [{"type": "Available", "status": "True"}]
    harness.given(task, deployment(task, replicas=0))
    counted(desired, "render")
    counted(status, "compute")
    assert harness.reconcile().status_updated and calls == ["render", "compute"]
    calls.clear()
    assert harness.reconcile().outcome == "unchanged"  # the status written: found current
    assert calls == ["compute"]
    calls.clear()
    for _ in range(3):  # resyncs
        assert harness.reconcile(after=300.0).outcome == "unchanged"
    assert (calls, harness.kube.kinds()) == ([], [])
    harness.deployment_changed(moved)
    assert harness.reconcile().outcome == "unchanged" and calls == ["compute"]
    calls.clear()
    harness.given(apptask(generation=2, replicas=0, image="nginx:1.27"))
    assert harness.reconcile().outcome == "applied" and calls[:1] == ["render"]


def settling(harness: Harness) -> Harness:
    """`harness` with the status settle of a running controller (2 s)."""
    harness.reconciler.settling = StatusSettle(settle=2.0)
    return harness


def observed(harness: Harness) -> None:
    """The Deployment controller observes the last apply (0 replicas: Ready at once)."""
    seen = copy.deepcopy(harness.kube.applied)
    seen["status"] = {"observedGeneration": seen["metadata"]["generation"]}
    harness.deployment_changed(seen)


def written_status(harness: Harness) -> tuple[Any, ...]:
    """(observedGeneration, phase, the Ready condition's status and reason) as written."""
    st = harness.apptasks.get(KEY)["status"]
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    return st["observedGeneration"], st["phase"], ready["status"], ready["reason"]


def test_a_change_the_deployment_controller_keeps_up_with_costs_one_status_write() -> None:
    harness = settling(Harness())
    harness.given(apptask(replicas=0))
    held = harness.reconcile()
    assert (harness.kube.kinds(), held.requeue_after) == (["create"], 2.0)
    observed(harness)  # its watch event enqueues the AppTask
    assert harness.reconcile(after=0.5).status_updated and harness.kube.kinds() == ["status"]
    assert written_status(harness) == (1, "Ready", "True", "DeploymentReady")


def test_past_the_settle_the_generation_is_reported_and_readiness_follows() -> None:
    """Issue 25: observedGeneration says the controller acted on the generation; whether the
    result is ready is the Ready condition's, written once the Deployment controller saw it."""
    harness = settling(Harness())
    harness.given(apptask(replicas=0))
    harness.reconcile()
    assert harness.reconcile(after=2.0).status_updated and harness.kube.kinds() == ["status"]
    assert written_status(harness) == (1, "Progressing", "False", "DeploymentProgressing")
    observed(harness)
    assert harness.reconcile(after=60.0).status_updated and harness.kube.kinds() == ["status"]
    assert written_status(harness) == (1, "Ready", "True", "DeploymentReady")
    harness.reconcile(after=1.0)
    assert harness.kube.kinds() == []


def test_while_the_deployment_controller_lags_beyond_the_settle_the_status_does_not_wait(
        ) -> None:
    harness = settling(Harness())
    harness.reconciler.settling.observed(harness.now - 40.0, harness.now)  # 40 s behind
    harness.given(apptask(replicas=0))
    written = harness.reconcile(after=1.0)
    assert (harness.kube.kinds(), written.requeue_after) == (["create", "status"], None)
    assert written_status(harness) == (1, "Progressing", "False", "DeploymentProgressing")


def test_a_status_write_waits_no_longer_than_the_settle_without_a_deployment_controller(
        ) -> None:
    harness = settling(Harness())
    harness.given(apptask())
    assert harness.reconcile().requeue_after == 2.0
    assert harness.reconcile(after=1.5).requeue_after == pytest.approx(0.5)
    assert harness.reconcile(after=0.5).status_updated


# --------------------------------------------------------------------------- paused, dry runs

DRY_RUN = Config(dry_run=True)


@pytest.mark.parametrize(("image", "synced"), [("nginx:1.25", "True"), ("nginx:1.27", "False")],
                         ids=["in-sync", "a-pending-change"])
def test_a_paused_apptask_sends_nothing_but_its_status(image: str, synced: str) -> None:
    harness = Harness()
    harness.given(apptask(generation=2, replicas=2, image=image, paused=True),
                  deployment(apptask(replicas=2)))
    result = harness.reconcile()
    assert (result.outcome, harness.kube.kinds()) == ("skipped", ["status"])
    written = harness.apptasks.get(KEY)["status"]
    condition = {c["type"]: c for c in written["conditions"]}["Synced"]
    assert (written["phase"], condition["status"], condition["reason"]) == (
        "Paused", synced, "Paused")


def test_a_paused_apptask_without_its_deployment_is_not_synced() -> None:
    harness = Harness()
    harness.given(apptask(paused=True))
    assert harness.reconcile().outcome == "skipped"
    written = harness.apptasks.get(KEY)["status"]
    assert harness.kube.kinds() == ["status"] and written["phase"] == "Paused"
    assert {c["type"]: c["status"] for c in written["conditions"]}["Synced"] == "False"


def test_a_dry_run_of_a_paused_apptask_plans_what_would_be_done_once_unpaused() -> None:
    harness = Harness(DRY_RUN)
    harness.given(apptask(generation=2, replicas=2, image="nginx:1.27", paused=True),
                  deployment(apptask(replicas=2)))
    result = harness.reconcile()
    assert harness.kube.kinds() == ["dry-run"]
    assert result.plan is not None and result.plan.patch
    assert (result.plan.action, result.plan.unpaused) == ("paused", "configured")


def test_a_dry_run_says_what_it_skips_and_why() -> None:
    harness = Harness(DRY_RUN)
    going = deployment(apptask())
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    harness.given(apptask(), going)
    result = harness.reconcile()
    assert (result.outcome, harness.kube.kinds()) == ("skipped", [])
    assert result.plan == diff.Plan(str(KEY), diff.Action.SKIPPED, detail=(
        "Deployment web is being deleted; it is created again once it is gone"))


def test_without_the_grace_a_vanished_deployment_is_created_again_at_once() -> None:
    """One-pass runs (no later reconcile would come) have no grace."""
    harness = Harness()
    harness.reconciler.vanished_grace = 0.0
    task = apptask()
    task["status"] = {"deploymentName": "web"}
    harness.given(task)
    assert harness.reconcile().outcome == "applied"
    assert harness.kube.kinds()[0] == "create"


# --------------------------------------------------------------------------- what an Event says


def synced_status(generation: int) -> Obj:
    return {"observedGeneration": generation, "conditions": [
        {"type": "Synced", "status": "True", "reason": "Synced"}]}


def test_a_take_back_names_the_fields_their_values_and_who_changed_them() -> None:
    harness = Harness()
    task = apptask(replicas=2)
    task["status"] = synced_status(1)  # the Deployment held generation 1
    kubectl = managed("kubectl-edit", frozenset({REPLICAS}), "Update")
    harness.given(task, deployment(apptask(replicas=2), kubectl, replicas=5))
    assert harness.reconcile().outcome == "applied"
    assert harness.events.notes == [
        "Deployment web: restored .spec.replicas (5 -> 2), changed by kubectl-edit"]


@pytest.mark.parametrize("status", [None, synced_status(1)], ids=["never-synced", "older-spec"])
def test_applying_a_spec_the_deployment_never_held_is_no_take_back(status: Obj | None) -> None:
    harness = Harness()
    task = apptask(generation=2, replicas=2)
    if status is not None:
        task["status"] = status
    harness.given(task, deployment(apptask(replicas=3)))
    assert harness.reconcile().outcome == "applied"
    assert harness.events.notes == ["Deployment web configured"]


def test_an_apptask_moved_to_this_shard_relabels_its_deployment_without_a_take_back() -> None:
    """The shard label on the Deployment of an AppTask that moved in is the old shard's (the
    same field manager): applying this shard's is the move, not another writer's change."""
    harness = Harness()
    harness.reconciler.shard = "shard-b"
    task = apptask()
    task["status"] = synced_status(1)
    live = deployment(task)
    live["metadata"]["labels"][desired.SHARD_LABEL] = "shard-a"
    live["metadata"]["managedFields"][0] = managed(
        MANAGER, fieldset.body_paths(desired.render(task, shard="shard-a")))
    harness.given(task, live)
    result = harness.reconcile()
    assert (result.outcome, result.fight_detected) == ("applied", False)
    assert harness.events.notes == ["Deployment web configured"]
    assert harness.memory().fight.takebacks == ()  # type: ignore[union-attr]


def converged(harness: Harness) -> Obj:
    """An AppTask and its Deployment, reconciled once: the status is written (and names the
    Deployment); returns the Deployment as cached."""
    task = apptask()
    live = deployment(task)
    harness.given(task, live)
    assert harness.reconcile().status_updated
    return live


def test_a_status_write_replaces_the_status_of_this_apptask_only() -> None:
    """Issue 24 item 7: the write names the AppTask's uid in a test (the status subresource
    ignores a merge patch's metadata.uid); one deleted and created again under its name since
    it was read is left alone, without an error."""
    harness = Harness()
    harness.given(apptask(), deployment(apptask()))
    written = harness.reconcile()
    (_, _, (test, add)), = harness.kube.requests
    assert test == {"op": "test", "path": "/metadata/uid", "value": "a1"}
    assert (add["op"], add["path"], add["value"]["observedGeneration"]) == ("add", "/status", 1)
    assert written.status_updated and harness.apptasks.get(KEY)["status"] == add["value"]
    harness.given(apptask(generation=2, image="nginx:1.27"))
    harness.kube.apptask = {**harness.kube.apptask, "metadata": {
        **harness.kube.apptask["metadata"], "uid": "a2"}}  # the server has another one now
    stale = harness.reconcile()
    assert harness.kube.kinds() == ["apply", "status"]
    assert (stale.outcome, stale.error, stale.status_updated) == ("applied", None, False)


def test_a_deployment_back_within_the_grace_gives_the_next_disappearance_its_grace() -> None:
    harness = Harness()
    live = converged(harness)
    harness.deployment_cache.delete(live)
    assert harness.reconcile().requeue_after == VANISHED_GRACE
    harness.deployment_changed(live)  # back, e.g. a relist after a watch gap
    assert harness.reconcile(after=VANISHED_GRACE / 2).outcome == "unchanged"
    harness.deployment_cache.delete(live)
    gone_again = harness.reconcile(after=10.0)
    assert (harness.kube.kinds(), gone_again.requeue_after) == ([], VANISHED_GRACE)


def test_a_server_refusing_the_create_only_precondition_gets_read_then_apply() -> None:
    """Issue 24 item 6: the create-only apply refused (500 on some servers) while the same
    body without the precondition is accepted: creations read first from then on, for the
    life of the process, reported once."""
    harness = Harness()
    harness.kube.create_only_refused = NO_PRECONDITION
    harness.given(apptask())
    first = harness.reconcile()
    assert harness.kube.kinds() == ["create", "get", "apply", "status"]
    assert (first.outcome, first.error, first.precondition_dropped) == ("applied", None, True)
    harness.deleted(harness.kube.apptask)
    harness.deployment_cache.delete(harness.kube.applied)
    harness.given(apptask())  # created again: its Deployment too
    again = harness.reconcile()
    assert harness.kube.kinds() == ["get", "apply", "status"]
    assert (again.outcome, again.precondition_dropped) == ("applied", False)


def test_a_refusal_is_suspected_of_being_the_preconditions_only_until_it_is_honoured() -> None:
    creation = CreatePrecondition()
    assert creation.suspect(NO_PRECONDITION) and creation.suspect(IMMUTABLE)
    assert not any(creation.suspect(error) for error in (
        UNAVAILABLE, ApiError(403, "Forbidden", "cannot patch"), ApiError(0, "", "reset"),
        ApiError(429, "TooManyRequests", "slow down")))
    creation.honoured()
    assert creation.sent and not creation.suspect(NO_PRECONDITION)


def test_dropping_the_precondition_is_reported_once() -> None:
    creation = CreatePrecondition()
    assert creation.refused() and not creation.refused()
    assert not creation.sent and not creation.suspect(NO_PRECONDITION)
