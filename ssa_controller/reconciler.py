"""Reconciles one AppTask: decide from the cache, apply its children, write the status.

The pipeline for a key: look the AppTask up in the cache -> render the apply bodies of the
Deployment and of the Service, if the spec has one (invalid spec: status, no retry) -> a
generation the API server refused waits for its slow retry (from memory, without a request) ->
a paused AppTask gets its status only (a dry run goes on, to plan what would happen once
unpaused) -> the Service first: from its own cache the same way as the Deployment below (but
read before it is created, never adopted, deleted when the spec drops it); its problem, if any,
is reported in place of Synced (ServiceStep) -> find the Deployment in the cache (none: the
apply creates it under a create-only precondition; only when the server answers that one exists
is it read and judged) -> compare body, live object and field ownership -> if something
drifted, check for a fight, transfer ownership where needed (adoption; hand-off of a released
`replicas`), then server-side apply -> compute the status and patch it only if it differs. The
outcome is a Result the controller's one switch turns into forget / requeue-after /
rate-limited retry.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .apptask import adopt, desired, diff, drift, service, status, unions
from .apptask.fights import Fight, FightState, FightTracker
from .apptask.outcomes import Outcome
from .apptask.rejections import Rejections
from .apptask.settle import StatusSettle
from .apptask.status import Sync
from .client.kube import Kube
from .client.resources import APPTASKS, DEPLOYMENTS, SERVICES
from .client.wire import JSON_PATCH, ApiError, failed_test, namespace_closed, rfc3339
from .memory import Memories, Memory
from .runtime import fieldset
from .runtime.backoff import ItemBackoff, K
from .runtime.objectkey import ObjectKey
from .runtime.store import Cached, Store, WriteAnswers
from .settings.config import BackoffConfig, Config

log = logging.getLogger(__name__)
Obj = dict[str, Any]
UNKNOWN_WRITER = "an unrecorded writer"
STATUS_MIN_INTERVAL = 1.0
"""Seconds between two status writes of one AppTask that only report progress (readyReplicas,
condition messages: same generation, phase and condition statuses). A rollout costs a write when
it starts, one when it ends, and at most one per interval in between, while the ready count
shown lags the Deployment's by at most this long."""
CREATE_ONLY = "1"
"""The metadata.resourceVersion sent with the apply that creates a Deployment the cache does not
hold. As a precondition no existing object can meet (etcd revision 1 precedes every write), it
makes the server answer 409 instead of silently taking over a Deployment that already exists;
an absent Deployment is created, owned by the controller's Apply entry alone (kube-apiserver
v1.20.2; see CreatePrecondition for servers that refuse it)."""
PRECONDITION_REFUSALS = frozenset({400, 422, 500})
"""The answers to a create-only apply that may be the server refusing the precondition itself
(some answer 500 "resourceVersion should not be set on objects to be created")."""
VANISHED_GRACE = 1.0
"""How long a Deployment that existed (the AppTask's status names it) and is gone from the cache
waits before it is re-created. Its AppTask's deletion travels on another watch and may arrive
after the Deployment's (garbage collection, a namespace being torn down, two relists after a
watch gap): within this grace the AppTask's DELETED event usually comes and nothing is sent."""


class EventSink(Protocol):
    def record(self, regarding: Mapping[str, Any], type_: str, reason: str, action: str,
               note: str) -> None: ...


@dataclass(frozen=True)
class Result:
    """The outcome of one reconcile, for the controller's switch and its metrics."""

    outcome: Outcome = Outcome.UNCHANGED
    error: ApiError | None = None
    """Set: retry with the per-key backoff (or the server's Retry-After)."""
    requeue_after: float | None = None
    status_updated: bool = False
    fight_detected: bool = False
    precondition_dropped: bool = False
    """This reconcile found that the server refuses the CREATE_ONLY precondition."""
    plan: diff.Plan | None = None
    service_plan: diff.Plan | None = None
    """In dry-run, the plan of the AppTask's Service (None: the spec has none, and there is
    none to delete)."""


@dataclass(frozen=True)
class ServiceStep:
    """What the Service's part of a reconcile did; its problem (`memory.service_sync`) is
    reported in the status in place of Synced."""

    outcome: Outcome | None = None
    """APPLIED, CONFLICT, INVALID or ERROR when the Service's part did something or failed."""
    error: ApiError | None = None
    requeue_after: float | None = None
    fight_detected: bool = False
    plan: diff.Plan | None = None

    def merged(self, result: Result) -> Result:
        """The reconcile's Result with the Service's part in it: the Deployment's outcome
        unless it was unchanged, the first error, the sooner requeue."""
        outcome = self.outcome if self.outcome is not None and result.outcome in (
            Outcome.UNCHANGED, Outcome.DRY_RUN) else result.outcome
        error = result.error if self.error is None else _first_error(result.error, self.error)
        delays = [d for d in (result.requeue_after, self.requeue_after) if d]
        return dataclasses.replace(
            result, outcome=outcome, error=error,
            requeue_after=min(delays) if delays else result.requeue_after,
            fight_detected=result.fight_detected or self.fight_detected,
            service_plan=self.plan)


def _first_error(earlier: ApiError | None, later: ApiError) -> ApiError:
    """The error of a reconcile two of whose requests failed: the first, unless the later one
    carries a longer Retry-After, which the retry must honour."""
    if earlier is None or (later.retry_after or 0.0) > (earlier.retry_after or 0.0):
        return later
    return earlier


def conflict_summary(error: ApiError) -> str:
    """'"kubectl" over .spec.replicas; ...' from a 409 apply conflict."""
    by_manager: dict[str, list[str]] = {}
    for cause in error.causes:
        manager = str(cause.get("message", "")).split('"')[1:2] or ["?"]
        by_manager.setdefault(manager[0], []).append(str(cause.get("field", "")))
    if not by_manager:
        return error.message
    return "; ".join(f'"{m}" over {", ".join(f)}' for m, f in sorted(by_manager.items()))


def rejected(error: ApiError) -> bool:
    """Whether the server refused the apply body itself, which no retry can change: validation
    (400, 422) or, on servers that report it so, a body server-side apply cannot merge (500
    "failed to create typed patch object", e.g. two ports with the same key)."""
    return error.status in (400, 422) or (
        error.status == 500 and error.message.startswith("failed to create typed patch object"))


def transient(error: ApiError) -> bool:
    """Whether a failure may pass by itself: no answer (status 0), throttling (429) or a
    server error (5xx) that is not a refusal of the body. Such a failure is retried without a
    status write until it has lasted `backoff.degradedAfter`: a blip is no news to a person,
    and a status write per failing AppTask would add to the load of a struggling API server."""
    return error.status in (0, 429) or (error.status >= 500 and not rejected(error))


class CreatePrecondition:
    """Whether creations carry the CREATE_ONLY precondition. Until the server has answered a
    create-only apply with a creation or a 409 (then it honours the precondition), a refusal
    that may be of the precondition itself (PRECONDITION_REFUSALS) is checked: the Deployment
    is read, then applied without it. If that apply passes, the precondition was the problem,
    and for the rest of the process creations read first and apply without it. A refusal of
    the body is refused again and changes nothing. Thread-safe, pure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._honoured = False
        self.sent = True
        """Whether creations carry the precondition."""

    def honoured(self) -> None:
        """The server answered a create-only apply with a creation or a 409."""
        self._honoured = True

    def suspect(self, error: ApiError) -> bool:
        """Whether a create-only apply's refusal may be of the precondition."""
        return self.sent and not self._honoured and error.status in PRECONDITION_REFUSALS

    def refused(self) -> bool:
        """An apply without the precondition passed where the create-only one was refused: stop
        sending it. True the first time (the one to report)."""
        with self._lock:
            first, self.sent = self.sent, False
        return first


def item_backoff(config: BackoffConfig) -> ItemBackoff[K]:
    """A per-key backoff as `backoff.*` configures it (keys of the type the caller asks for)."""
    return ItemBackoff(config.base, config.factor, config.cap, config.jitter)


def _generation(apptask: Obj) -> int:
    return int(apptask["metadata"].get("generation", 0))


def _create_only(body: Obj) -> Obj:
    """`body` with the CREATE_ONLY precondition: applies only if no Deployment exists."""
    return {**body, "metadata": {**body["metadata"], "resourceVersion": CREATE_ONLY}}


def _status_write(apptask: Obj, wanted: Obj) -> list[Obj]:
    """The status write: a JSON patch replacing the whole status, of the AppTask with this uid
    only. A reconcile of an AppTask deleted and created again under its name since it was read
    must not write onto the new one: the status subresource ignores a merge patch's
    metadata.uid (v1.20.2 applies such a patch to the new AppTask), a `test` refuses it."""
    return [{"op": "test", "path": "/metadata/uid", "value": apptask["metadata"]["uid"]},
            {"op": "add", "path": "/status", "value": wanted}]


def _comparison(apptask: Obj, live: Cached, manager: str) -> tuple[Any, ...]:
    """What a comparison of the rendered body with the live Deployment depends on: the body is
    a function of the AppTask's uid and generation; the Deployment's spec moves its generation;
    its labels and owner references are compared as they are, and of its field owners the paths
    `manager` applies (drift.compute's input; who else owns what matters only once something
    drifted). Equal tuples give the same drift, so the Deployment controller's status updates,
    which add its own managedFields entry, cost no comparison."""
    meta, live_meta = apptask["metadata"], live.obj["metadata"]
    return (meta.get("uid"), meta.get("generation"), live_meta.get("uid"),
            live_meta.get("generation"), live_meta.get("labels"),
            live_meta.get("ownerReferences"), fieldset.applied_by(live.owners, manager))


def _service_comparison(apptask: Obj, live: Cached, manager: str) -> tuple[Any, ...]:
    """_comparison for a Service, which has no generation: its spec and annotations are
    compared as they are (a status update, a load balancer's address, costs no comparison)."""
    return (*_comparison(apptask, live, manager), live.obj.get("spec"),
            live.obj["metadata"].get("annotations"))


def _status_basis(apptask: Obj, deployment: Obj | None, service_: Obj | None,
                  sync: Sync) -> tuple[Any, ...] | None:
    """What status.compute's answer depends on (its clock only stamps conditions that change):
    the AppTask's version (its spec and its status), the Deployment's, the Service's, the sync.
    None when a resourceVersion is missing (then it cannot tell versions apart)."""
    versions = [None if obj is None else obj["metadata"].get("resourceVersion")
                for obj in (apptask, deployment, service_)]
    if any(v is None and obj is not None for v, obj in zip(
            versions, (apptask, deployment, service_), strict=True)):
        return None
    return (*versions, sync)


def _was_synced(apptask: Obj) -> bool:
    """Whether the status says the Deployment held this generation of the spec (Synced, or
    since then fought over): a difference now is another writer's change."""
    st = apptask.get("status") or {}
    reasons = {c.get("type"): c.get("reason") for c in st.get("conditions") or ()}
    return st.get("observedGeneration") == _generation(apptask) and \
        reasons.get("Synced") in ("Synced", "FieldFight")


def _has_service(apptask: Obj) -> bool:
    return apptask.get("spec", {}).get("service") is not None


def _service_key(memory: Memory) -> str:
    """What a dry-run plan of the Service is keyed by: `ns/name (Service)`."""
    return f"{memory.key} (Service)"


def _synced_said(apptask: Obj) -> tuple[Any, Any]:
    """The reason and message of the Synced condition the AppTask's status shows."""
    synced: Obj = next((c for c in (apptask.get("status") or {}).get("conditions") or ()
                        if c.get("type") == "Synced"), {})
    return synced.get("reason"), synced.get("message")


def _rollout_unobserved(deployment: Obj) -> bool:
    observed = deployment.get("status", {}).get("observedGeneration", 0)
    return int(deployment["metadata"].get("generation", 0)) > int(observed)


class Reconciler:
    """Turns one AppTask key into at most one apply and one status patch."""

    def __init__(self, config: Config, kube: Kube, apptasks: Store, deployments: Store,
                 services: Store, fights: FightTracker, events: EventSink, *,
                 apptask_answers: WriteAnswers, deployment_answers: WriteAnswers,
                 service_answers: WriteAnswers, clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], str] = rfc3339, shard: str | None = None) -> None:
        """`apptasks`, `deployments`, `services`: the caches, read-only; `*_answers`: where the
        answers of the reconciler's own writes (status patches, applies) go into them; `shard`:
        the shard this process is, with sharding (its name labels what it applies)."""
        self.config = config
        self.shard = shard
        self.kube = kube
        self.apptasks = apptasks
        self.deployments = deployments
        self.services = services
        self.apptask_answers = apptask_answers
        self.deployment_answers = deployment_answers
        self.service_answers = service_answers
        self.fights = fights
        self.rejections = Rejections(item_backoff(config.backoff))
        self.events = events
        self.clock = clock
        self.wallclock = wallclock
        self.memories = Memories()
        """What is remembered about each AppTask between its reconciles; the controller's
        AppTask event handler makes and drops each Memory (Memories.seen)."""
        self.status_min_interval = STATUS_MIN_INTERVAL
        self.creation = CreatePrecondition()
        self.vanished_grace = VANISHED_GRACE
        """0 in one-pass runs, where no later reconcile would re-create the Deployment."""
        self.degraded_after = config.backoff.degraded_after
        """How long transient failures last before the status says Degraded; 0 in one-pass
        runs, where no retry follows."""
        self.settling = StatusSettle()
        """Status writes held for the Deployment controller to observe an apply; its `settle`
        is 0 where nothing will come back to write the status later (one-pass runs): then
        statuses are neither held for the rollout nor coalesced."""

    def found_elsewhere(self, key: ObjectKey, apptask: Mapping[str, Any]) -> None:
        """The Deployment of `apptask` may exist outside the cache (with sharding: the AppTask
        moved in, and its Deployment carries the label of the shard it comes from): read it
        before applying, rather than try to create it."""
        self.memories.of(key, apptask).uncached = True

    @property
    def dry_run(self) -> bool:
        return self.config.dry_run

    def reconcile(self, key: ObjectKey) -> Result:
        apptask = self.apptasks.get(key)
        if apptask is None or "deletionTimestamp" in apptask["metadata"]:
            return self._skipped(key, "the AppTask is being deleted")
        memory = self.memories.of(key, apptask)
        result = self._reconcile(memory, apptask)
        failing = result.outcome is Outcome.ERROR and result.error is not None \
            and transient(result.error)
        if not failing:  # the run of transient failures, if any, is over
            memory.failing_since = None
        return result

    def _reconcile(self, memory: Memory, apptask: Obj) -> Result:
        memory.service_sync = None  # found anew by this reconcile's Service part
        if memory.closing:
            return self._skipped(memory.key, "its namespace is being deleted")  # and it with it
        cached = self.deployments.cached(memory.key)
        live = None if cached is None else cached.obj
        rejection = memory.rejection  # (a generation is refused only once it rendered)
        if rejection is not None and rejection.generation != _generation(apptask):
            memory.rejection = rejection = None  # a new generation is tried at once
        if rejection is not None and (retry_in := rejection.wait(live, self.clock())) > 0:
            return self._finish(memory, apptask, live, Sync.rejected(rejection.message),
                                Result(Outcome.INVALID, requeue_after=retry_in),
                                plan_action=diff.Action.INVALID)
        paused = apptask.get("spec", {}).get("paused")
        if not paused and cached is not None and self._still_in_sync(memory, apptask, cached) \
                and self._service_still_in_sync(memory, apptask):
            memory.vanished_at = None  # (it is there)
            step = self._service_calm(memory, apptask)
            return step.merged(self._unchanged(memory, apptask, cached.obj))
        try:
            body = desired.render(apptask, self.config.pod_template, self.config.admission,
                                  self.shard)
            service_body = service.render(apptask, self.config.admission, self.shard)
        except desired.InvalidSpec as exc:
            return self._invalid(memory, apptask, Sync.invalid(str(exc)))
        if not paused:
            step = self._reconcile_service(memory, apptask, service_body)
            return step.merged(self._reconcile_deployment(memory, apptask, body, cached))
        if self.dry_run:  # the plan shows what would happen once it is unpaused
            step = self._reconcile_service(memory, apptask, service_body)
            result = step.merged(self._reconcile_deployment(memory, apptask, body, cached))
            return dataclasses.replace(
                result, plan=result.plan and result.plan.paused(),
                service_plan=result.service_plan and result.service_plan.paused())
        return self._paused(memory, apptask, body, service_body, cached)

    def _reconcile_deployment(self, memory: Memory, apptask: Obj, body: Obj,
                              cached: Cached | None) -> Result:
        """From the cached Deployment, or its absence, to the apply."""
        live = None if cached is None else cached.obj
        if live is None:
            wait, memory.vanished_at = self._grace_left(
                memory.vanished_at, bool(apptask.get("status", {}).get("deploymentName")))
            if wait > 0:
                return self._skipped(memory.key, "its Deployment vanished; it is created again "
                                     "unless the AppTask's deletion is seen first",
                                     requeue_after=wait)
        else:  # there (again): a later disappearance waits its whole grace
            memory.vanished_at = None
        if live is None and (memory.uncached or not self.creation.sent):
            try:  # known to exist without our label, or creations read first: read it
                cached = self._fetch(memory.key)
            except ApiError as exc:
                return self._failed(memory, apptask, None, exc)
            if cached is None:
                memory.uncached = False
            live = None if cached is None else cached.obj
        if live is not None and "deletionTimestamp" in live["metadata"]:
            # its DELETED event enqueues the AppTask again
            return self._skipped(memory.key, f"Deployment {live['metadata']['name']} is being "
                                 "deleted; it is created again once it is gone")
        return self._converge_unless_foreign(memory, apptask, body, cached)

    def _still_in_sync(self, memory: Memory, apptask: Obj, cached: Cached) -> bool:
        """Whether the comparison that last found the Deployment in sync still holds: then
        nothing needs rendering or comparing (a resync over converged AppTasks). It was made
        of a Deployment this AppTask controls; one being deleted is not in sync."""
        return memory.in_sync is not None and "deletionTimestamp" not in cached.obj["metadata"] \
            and memory.in_sync == _comparison(apptask, cached, self.config.field_manager)

    def _unchanged(self, memory: Memory, apptask: Obj, live: Obj) -> Result:
        """The Deployment matches the spec: the status may have news (readiness, a fight)."""
        log.debug("%s: unchanged", memory.key)
        return self._finish(memory, apptask, live, *self._calm_or_fight(
            memory, apptask, Result(Outcome.UNCHANGED)))

    def _paused(self, memory: Memory, apptask: Obj, body: Obj, service_body: Obj | None,
                cached: Cached | None) -> Result:
        """spec.paused: nothing is sent but the status, which says whether the Deployment and
        the Service match the spec all the same (from the cache)."""
        if cached is None:
            return self._finish(memory, apptask, None, Sync.paused(False),
                                Result(Outcome.SKIPPED))
        in_sync = self._matches(apptask, body, cached) and (
            self._service_matches(apptask, service_body))
        return self._finish(memory, apptask, cached.obj, Sync.paused(in_sync),
                            Result(Outcome.SKIPPED))

    def _matches(self, apptask: Obj, body: Obj, cached: Cached) -> bool:
        """Whether a child this AppTask controls holds `body` and nothing else of the
        controller's (from the cache)."""
        if not status.controls(apptask, cached.obj):
            return False
        found = drift.compute(body, cached.obj, fieldset.applied_by(
            cached.owners, self.config.field_manager))
        return not (found.changed or found.stale)

    def _service_matches(self, apptask: Obj, body: Obj | None) -> bool:
        """Whether the cached Service is as `body` asks (None: there is none of the AppTask's)."""
        cached = self.services.cached(ObjectKey.of(apptask))
        if body is None:
            return cached is None or not status.controls(apptask, cached.obj)
        return cached is not None and self._matches(apptask, body, cached)

    def _skipped(self, key: ObjectKey, why: str, requeue_after: float | None = None) -> Result:
        """Nothing to do now; in dry-run the plan says why."""
        plan = diff.Plan(str(key), diff.Action.SKIPPED, detail=why) if self.dry_run else None
        return Result(Outcome.SKIPPED, requeue_after=requeue_after, plan=plan)

    def _grace_left(self, since: float | None, had: bool) -> tuple[float, float | None]:
        """Seconds to wait before re-creating a child the AppTask had (`had`: its status names
        it; 0: go ahead, as for one it never had), and when it was first found missing, to
        remember (`since` until now; None once the wait is over)."""
        if not had:
            return 0.0, None
        now = self.clock()
        since = now if since is None else since
        left = since + self.vanished_grace - now
        return (left, since) if left > 0 else (0.0, None)

    def _namespace_closed(self, memory: Memory, exc: ApiError) -> Result:
        """The namespace is being torn down: skip its AppTasks until their deletion is seen; no
        status write, no Event, no retry (none of them could succeed)."""
        namespace = memory.key.namespace
        closing = self.memories.close_namespace(namespace)
        log.info("%s: namespace %s is being deleted; its %d AppTasks wait for their deletion "
                 "(%s)", memory.key, namespace, closing, exc.message)
        return self._skipped(memory.key, "its namespace is being deleted")

    def _found_uncached(self, memory: Memory, apptask: Obj, body: Obj) -> Result:
        """The create-only apply found a Deployment the cache does not hold (one without the
        managed-by label: someone else's, or ours with the label removed). Read it once and
        decide as for a cached one: refuse, adopt, or converge. Later tries read it first."""
        memory.uncached = True
        try:
            cached = self._fetch(memory.key)
        except ApiError as exc:
            return self._failed(memory, apptask, None, exc)
        if cached is None or "deletionTimestamp" in cached.obj["metadata"]:  # retry: created next
            return self._failed(memory, apptask, None, ApiError(
                409, "Conflict", f"Deployment {body['metadata']['name']} is being deleted; "
                "it is created again once it is gone"))
        return self._converge_unless_foreign(memory, apptask, body, cached)

    def _fetch(self, key: ObjectKey) -> Cached | None:
        """The Deployment when the cache has none (it may exist without our label)."""
        try:
            return self.deployments.record(self.kube.get(DEPLOYMENTS.path(key.namespace,
                                                                          key.name)))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _converge_unless_foreign(self, memory: Memory, apptask: Obj, body: Obj,
                                 cached: Cached | None) -> Result:
        """Converge, unless the Deployment is one this AppTask does not control and may not
        adopt."""
        if cached is not None and not status.controls(apptask, cached.obj):
            refusal = self._refuse_foreign(memory, apptask, cached.obj)
            if refusal is not None:
                return refusal
        return self._converge(memory, apptask, body, cached)

    def _refuse_foreign(self, memory: Memory, apptask: Obj, live: Obj) -> Result | None:
        """None when a Deployment this AppTask does not control may be adopted, else why not."""
        name = live["metadata"]["name"]
        ref = desired.controller_ref(live)
        if ref is not None:
            return self._failed(memory, apptask, live, ApiError(
                409, "OwnedByPreviousAppTask",
                f"Deployment {name} is controlled by an earlier AppTask {ref.get('name')} "
                f"(uid {ref.get('uid')}); waiting for its garbage collection"))
        if any(r.get("controller") for r in live["metadata"].get("ownerReferences") or ()):
            message = f"Deployment {name} is controlled by another owner; it is never adopted"
        elif self.config.apply.adopt_existing:
            return None
        else:
            message = (f"Deployment {name} exists and is not managed by this AppTask; "
                       "set apply.adoptExisting: true to adopt it")
        return self._report(memory, apptask, live, Sync.conflicted("DeploymentExists", message),
                            Result(Outcome.CONFLICT), diff.Action.CONFLICT, action="Adopt")

    def _converge(self, memory: Memory, apptask: Obj, body: Obj, cached: Cached | None
                  ) -> Result:
        manager = self.config.field_manager
        generation = _generation(apptask)
        now = self.clock()
        fight_found = False
        restored = ""
        if cached is not None:
            live, owners = cached.obj, cached.owners
            signature = _comparison(apptask, cached, manager)
            found = None if memory.in_sync == signature else drift.compute(
                body, live, fieldset.applied_by(owners, manager))
            if not found:
                memory.in_sync = signature
                return self._unchanged(memory, apptask, live)
            fight_found, restored = self._take_backs(memory, apptask, memory.fight, body,
                                                     cached, found, now)
            delay = self.fights.apply_delay(memory.fight, generation, now)
            if delay > 0:
                fight = self.fights.fight(memory.fight, generation, now)
                assert fight is not None
                return self._finish(memory, apptask, live, self._fight_sync(fight),
                                    Result(Outcome.CONFLICT, requeue_after=delay,
                                           fight_detected=fight_found),
                                    plan_action=diff.Action.CONFLICT)
        return self._apply(memory, apptask, body, cached, generation, fight_found, restored)

    def _take_backs(self, memory: Memory, apptask: Obj, state: FightState | None, body: Obj,
                    cached: Cached, found: drift.Drift, now: float,
                    of: str = "") -> tuple[bool, str]:
        """What a child's drift `found` says of other writers: whether their take-backs make a
        fight (counted in its fight `state`), and what the apply restores, to say so (when the
        status says the child held this generation: someone else changed it). A new shard
        label is the AppTask's move between shards, not another writer's change."""
        found = drift.by_others(found, (desired.SHARD_PATH,))
        if not found.taken:
            return False, ""
        manager = self.config.field_manager
        fight_found = self._took_back(memory, apptask, state, _generation(apptask),
                                      cached.owners, found, now, of)
        if not _was_synced(apptask):
            return fight_found, ""
        return fight_found, drift.restored(
            found.taken, body, cached.obj,
            fieldset.taken_by_others(cached.owners, manager, found.taken), UNKNOWN_WRITER)

    def _took_back(self, memory: Memory, apptask: Obj, state: FightState | None,
                   generation: int, owners: fieldset.Owners, found: drift.Drift, now: float,
                   of: str = "") -> bool:
        """Count a take-back in a child's fight `state` (`of`: "Service NAME: " for the
        Service's); True when this makes a fight, reported once."""
        takers = fieldset.taken_by_others(owners, self.config.field_manager, found.taken)
        managers = tuple(sorted(takers)) or (UNKNOWN_WRITER,)
        fields = tuple(fieldset.display(p) for p in found.taken)
        fight = self.fights.took_back(state, generation, managers, fields, now)
        if fight is None:
            return False
        message = self._fight_sync(fight, of).message
        log.warning("%s: fight detected: %s", memory.key, message)
        self._event(apptask, "Warning", "FieldFight", "Apply", message)
        return True

    def _calm_or_fight(self, memory: Memory, apptask: Obj,
                       result: Result) -> tuple[Sync, Result]:
        """Synced, or, while a fight lasts, its Conflict and a look again once it may end."""
        fight = self.fights.fight(memory.fight, _generation(apptask), self.clock())
        if fight is None:
            return Sync.synced(memory.key.name, _has_service(apptask)), result
        return self._fight_sync(fight), dataclasses.replace(
            result, requeue_after=self.config.fights.window)

    @staticmethod
    def _fight_sync(fight: Fight, of: str = "") -> Sync:
        """The Conflict of a fight (`of`: "Service NAME: " for the Service's)."""
        return Sync.conflicted(
            "FieldFight",
            f"{of}{', '.join(fight.managers)} keeps taking back {', '.join(fight.fields)} "
            f"({fight.takebacks} take-backs); re-applying with growing backoff")

    def _apply(self, memory: Memory, apptask: Obj, body: Obj, cached: Cached | None,
               generation: int, fight_found: bool, restored: str = "",
               checking: ApiError | None = None) -> Result:
        """Apply `body` (`restored`: what it takes back from other writers, to say so): a
        Deployment the cache does not hold under the CREATE_ONLY precondition while the server
        takes it, unless this apply is `checking` a create-only apply's refusal (see
        CreatePrecondition)."""
        key = memory.key
        path = DEPLOYMENTS.path(key.namespace, key.name)
        live = None if cached is None else cached.obj
        create_only = live is None and self.creation.sent and checking is None
        try:
            prepared = cached
            if cached is not None and not self.dry_run:
                prepared = self._transfer_ownership(key, apptask, path, body, cached)
            if prepared is not cached and prepared is not None and not drift.compute(
                    body, prepared.obj, fieldset.applied_by(prepared.owners,
                                                            self.config.field_manager)):
                answer = prepared.obj  # a removal was the whole change: nothing to apply
            else:
                answer = self.kube.apply(path, _create_only(body) if create_only else body,
                                         field_manager=self.config.field_manager,
                                         force=self.config.apply.force, dry_run=self.dry_run)
        except ApiError as exc:
            if create_only and exc.status == 409:
                self.creation.honoured()
                return self._found_uncached(memory, apptask, body)
            if create_only and self.creation.suspect(exc):
                return self._read_then_create(memory, apptask, body, generation, exc)
            return self._apply_failed(memory, apptask, live, generation, exc)
        if create_only:
            self.creation.honoured()
        dropped = checking is not None and self.creation.refused()
        if dropped:
            log.warning("the API server refuses create-only applies (%s): from now on a "
                        "Deployment is read before it is created, and applied without the "
                        "precondition", checking)
        memory.rejection = None
        if self.dry_run:
            plan = diff.plan(str(key), live, answer)
            return Result(Outcome.DRY_RUN if plan.changes else Outcome.UNCHANGED, plan=plan)
        # The answer is the Deployment as this apply left it, in sync with the body: its watch
        # event (the same version) costs no comparison.
        memory.in_sync = _comparison(apptask, self.deployment_answers.record_write(answer),
                                     self.config.field_manager)
        memory.fight = self.fights.applied(memory.fight, generation, self.clock())
        what = restored or ("created" if live is None else "configured")
        log.info("%s: applied Deployment (%s)", key, what)
        self._event(apptask, "Normal", "Applied", "Apply", f"Deployment {key.name}: {restored}"
                    if restored else f"Deployment {key.name} {what}")
        if _rollout_unobserved(answer):
            memory.applied_at = self.clock()
        return self._finish(memory, apptask, self.deployments.get(key), *self._calm_or_fight(
            memory, apptask, Result(Outcome.APPLIED, fight_detected=fight_found,
                                    precondition_dropped=dropped)))

    def _read_then_create(self, memory: Memory, apptask: Obj, body: Obj, generation: int,
                          refusal: ApiError) -> Result:
        """The create-only apply was refused with `refusal`, perhaps for its precondition: read
        the Deployment, then apply without the precondition (see CreatePrecondition)."""
        try:
            cached = self._fetch(memory.key)
        except ApiError as exc:
            return self._failed(memory, apptask, None, exc)
        if cached is not None:  # there after all, outside the cache: judged as such
            memory.uncached = True
            return self._converge_unless_foreign(memory, apptask, body, cached)
        return self._apply(memory, apptask, body, None, generation, False, checking=refusal)

    def _transfer_ownership(self, key: ObjectKey, apptask: Obj, path: str, body: Obj,
                            live: Cached) -> Cached:
        """Before the apply: adopt a Deployment this AppTask does not control yet (only once a
        dry-run shows the apply is accepted), hand off a released `replicas` so that the
        apply does not remove it, take over the union members the body switches from so that
        the apply removes them, and remove whole the probes it stops setting (unions.py).
        Returns the Deployment as the last of these writes left it."""
        manager = self.config.field_manager
        if not status.controls(apptask, live.obj):
            adopt.take_over_client_side_fields(self.kube, live.obj, body, manager,
                                               self.config.apply.force)
        handoff = adopt.handoff_body(body, live.obj, live.owners, manager)
        if handoff is not None:
            self.kube.apply(path, handoff, field_manager=adopt.handoff_manager(manager),
                            force=False)
            log.info("%s: handed %s over to %s", key,
                     drift.fields_text(handoff),
                     adopt.handoff_manager(manager))
        takeover = unions.takeover(body, live.obj, live.owners, manager)
        if takeover is not None:  # so that the apply removes the members it switches from
            live = self.deployment_answers.record_write(self.kube.apply(
                path, takeover, field_manager=manager, force=self.config.apply.force))
            log.info("%s: took over %s to switch from them", key, ", ".join(
                fieldset.display(p) for p in unions.leftovers(body, takeover)))
        removal = unions.removal(body, live.obj, live.owners, manager)
        if removal is None:
            return live
        log.info("%s: removing %s whole", key, ", ".join(
            op["path"] for op in removal if op["op"] == "remove"))
        return self.deployment_answers.record_write(adopt.guarded_patch(
            self.kube, live.obj, removal, "a struct was removed whole", manager))

    # -- the Service -------------------------------------------------------------------------

    def _service_still_in_sync(self, memory: Memory, apptask: Obj) -> bool:
        """Whether the Service needs nothing: none asked for and none of this AppTask's cached,
        or the comparison that last found it in sync still holds."""
        cached = self.services.cached(memory.key)
        if not _has_service(apptask):
            return cached is None or not status.controls(apptask, cached.obj)
        return cached is not None and memory.service_in_sync is not None \
            and "deletionTimestamp" not in cached.obj["metadata"] \
            and memory.service_in_sync == _service_comparison(apptask, cached,
                                                              self.config.field_manager)

    def _service_calm(self, memory: Memory, apptask: Obj) -> ServiceStep:
        """Nothing to do for the Service, unless a fight over it lasts: then its Conflict and
        a look again once it may end."""
        fight = self.fights.fight(memory.service_fight, _generation(apptask), self.clock())
        if fight is None:
            return ServiceStep()
        memory.service_sync = self._fight_sync(fight, f"Service {memory.key.name}: ")
        return ServiceStep(requeue_after=self.config.fights.window)

    def _reconcile_service(self, memory: Memory, apptask: Obj, body: Obj | None) -> ServiceStep:
        """From the cached Service, or its absence, to its apply (`body`) or its deletion
        (None), before the Deployment's part of the reconcile. A Service the cache does not hold
        is read before it is applied, never created under the CREATE_ONLY precondition:
        kube-apiserver v1.20.2 answers a create-only apply of a Service 500 "resourceVersion
        should not be set on objects to be created". One the read finds is judged as a cached
        one (someone else's is refused); one another writer creates between the read and the
        apply would be merged into, as a Deployment on servers refusing the precondition."""
        cached = self.services.cached(memory.key)
        if body is None:
            memory.service_rejection = None
            return self._delete_service(memory, apptask, cached)
        rejection = memory.service_rejection
        if rejection is not None and rejection.generation != _generation(apptask):
            memory.service_rejection = rejection = None  # a new generation is tried at once
        if rejection is not None and (retry_in := rejection.wait(
                None if cached is None else cached.obj, self.clock())) > 0:
            memory.service_sync = Sync.rejected(rejection.message)
            return ServiceStep(Outcome.INVALID, requeue_after=retry_in)
        if cached is not None:
            memory.service_vanished_at = None
            return self._converge_service(memory, apptask, body, cached)
        # None cached while the status names one: its AppTask's deletion may be on its way
        wait, memory.service_vanished_at = self._grace_left(
            memory.service_vanished_at, bool(apptask.get("status", {}).get("serviceName")))
        if wait > 0:
            return ServiceStep(requeue_after=wait)
        try:  # read first: one may exist without our label
            cached = self._fetch_service(memory.key)
        except ApiError as exc:
            return self._service_failed(memory, exc)
        if cached is None:
            return self._apply_service(memory, apptask, body, None)
        return self._converge_service(memory, apptask, body, cached)

    def _fetch_service(self, key: ObjectKey) -> Cached | None:
        """The Service when the cache has none (it may exist without our label)."""
        try:
            return self.services.record(self.kube.get(SERVICES.path(key.namespace, key.name)))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _converge_service(self, memory: Memory, apptask: Obj, body: Obj,
                          cached: Cached) -> ServiceStep:
        """Apply the Service if it drifted, as the Deployment: take-backs counted and damped;
        never one this AppTask does not control."""
        live, owners, manager = cached.obj, cached.owners, self.config.field_manager
        name = live["metadata"]["name"]
        if "deletionTimestamp" in live["metadata"]:
            return self._service_failed(memory, ApiError(
                409, "Conflict", f"Service {name} is being deleted; it is created again once "
                "it is gone"))
        if not status.controls(apptask, live):
            return self._refuse_foreign_service(memory, live)
        generation, now = _generation(apptask), self.clock()
        signature = _service_comparison(apptask, cached, manager)
        found = None if memory.service_in_sync == signature else drift.compute(
            body, live, fieldset.applied_by(owners, manager))
        if not found:
            memory.service_in_sync = signature
            step = self._service_calm(memory, apptask)
            return dataclasses.replace(step, plan=diff.Plan(
                _service_key(memory), diff.Action.UNCHANGED)) if self.dry_run else step
        of = f"Service {name}: "
        fight_found, restored = self._take_backs(memory, apptask, memory.service_fight, body,
                                                 cached, found, now, of)
        delay = self.fights.apply_delay(memory.service_fight, generation, now)
        if delay > 0:
            fight = self.fights.fight(memory.service_fight, generation, now)
            assert fight is not None
            memory.service_sync = self._fight_sync(fight, of)
            return ServiceStep(Outcome.CONFLICT, requeue_after=delay,
                               fight_detected=fight_found)
        step = self._apply_service(memory, apptask, body, cached, restored)
        return dataclasses.replace(step, fight_detected=fight_found)

    def _refuse_foreign_service(self, memory: Memory, live: Obj) -> ServiceStep:
        """A Service of the AppTask's name it does not control: never adopted."""
        name = live["metadata"]["name"]
        ref = desired.controller_ref(live)
        if ref is not None:
            return self._service_failed(memory, ApiError(
                409, "OwnedByPreviousAppTask",
                f"Service {name} is controlled by an earlier AppTask {ref.get('name')} "
                f"(uid {ref.get('uid')}); waiting for its garbage collection"))
        owner = "is controlled by another owner" if any(
            r.get("controller") for r in live["metadata"].get("ownerReferences") or ()) \
            else "exists and is not managed by this AppTask"
        memory.service_sync = Sync.conflicted(
            "ServiceExists", f"Service {name} {owner}; a Service is never adopted")
        return ServiceStep(Outcome.CONFLICT, plan=diff.Plan(
            _service_key(memory), diff.Action.CONFLICT, detail=memory.service_sync.message))

    def _apply_service(self, memory: Memory, apptask: Obj, body: Obj, cached: Cached | None,
                       restored: str = "") -> ServiceStep:
        """Apply the Service (`restored`: what it takes back from other writers, to say so)."""
        key = memory.key
        live = None if cached is None else cached.obj
        try:
            answer = self.kube.apply(SERVICES.path(key.namespace, key.name), body,
                                     field_manager=self.config.field_manager,
                                     force=self.config.apply.force, dry_run=self.dry_run)
        except ApiError as exc:
            return self._service_apply_failed(memory, apptask, live, exc)
        if self.dry_run:
            plan = diff.plan(_service_key(memory), live, answer)
            return ServiceStep(Outcome.DRY_RUN if plan.changes else None, plan=plan)
        memory.service_rejection = None
        memory.service_in_sync = _service_comparison(
            apptask, self.service_answers.record_write(answer), self.config.field_manager)
        memory.service_fight = self.fights.applied(memory.service_fight, _generation(apptask),
                                                   self.clock())
        what = restored or ("created" if live is None else "configured")
        log.info("%s: applied Service (%s)", key, what)
        self._event(apptask, "Normal", "Applied", "Apply", f"Service {key.name}: {restored}"
                    if restored else f"Service {key.name} {what}")
        return dataclasses.replace(self._service_calm(memory, apptask), outcome=Outcome.APPLIED)

    def _service_apply_failed(self, memory: Memory, apptask: Obj, live: Obj | None,
                              exc: ApiError) -> ServiceStep:
        name = memory.key.name
        if namespace_closed(exc):
            self._namespace_closed(memory, exc)
            return ServiceStep(Outcome.SKIPPED)
        if exc.status == 409:
            memory.service_sync = Sync.conflicted(
                "ApplyConflict", f"Service {name}: apply conflicts with {conflict_summary(exc)}")
            return ServiceStep(Outcome.CONFLICT, error=exc)
        if rejected(exc):  # tried again at once for a new generation, else with backoff
            now = self.clock()
            memory.service_rejection = self.rejections.refused(
                memory.service_rejection, _generation(apptask), live,
                f"Service {name}: {exc.message or exc}", now)
            memory.service_sync = Sync.rejected(memory.service_rejection.message)
            return ServiceStep(Outcome.INVALID,
                               requeue_after=memory.service_rejection.retry_at - now)
        return self._service_failed(memory, exc)

    def _service_failed(self, memory: Memory, exc: ApiError) -> ServiceStep:
        """A failure to retry; reported (Degraded) unless transient and not lasting yet."""
        log.warning("%s: Service: error: %s", memory.key, exc)
        if not (transient(exc) and not self.dry_run
                and self._failing_for(memory) < self.degraded_after):
            memory.service_sync = Sync.failed(f"Service {memory.key.name}: {exc}")
        return ServiceStep(Outcome.ERROR, error=exc, plan=diff.Plan(
            _service_key(memory), diff.Action.ERROR, detail=str(exc)))

    def _delete_service(self, memory: Memory, apptask: Obj,
                        cached: Cached | None) -> ServiceStep:
        """The spec has no Service: delete the one this AppTask controls, if any, and only
        that one (the uid as precondition)."""
        if cached is None or not status.controls(apptask, cached.obj) \
                or "deletionTimestamp" in cached.obj["metadata"]:
            return ServiceStep()
        key, meta = memory.key, cached.obj["metadata"]
        if self.dry_run:
            return ServiceStep(Outcome.DRY_RUN, plan=diff.Plan(
                _service_key(memory), diff.Action.DELETED, detail="spec.service was removed"))
        try:
            self.kube.request("DELETE", SERVICES.path(key.namespace, key.name), body={
                "apiVersion": "v1", "kind": "DeleteOptions",
                "preconditions": {"uid": meta["uid"]}})
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or another Service of that name: not ours
                return ServiceStep()
            return self._service_failed(memory, exc)
        memory.service_in_sync = memory.service_fight = None
        log.info("%s: deleted Service %s (spec.service was removed)", key, key.name)
        self._event(apptask, "Normal", "Deleted", "Delete",
                    f"Service {key.name} deleted: spec.service was removed")
        return ServiceStep(Outcome.APPLIED)

    def _apply_failed(self, memory: Memory, apptask: Obj, live: Obj | None, generation: int,
                      exc: ApiError) -> Result:
        if exc.reason == adopt.RACED:  # a lost race, not a problem to report: tried again
            log.info("%s: %s; trying again", memory.key, exc.message)
            return Result(Outcome.CONFLICT, error=exc)
        if namespace_closed(exc):
            return self._namespace_closed(memory, exc)
        if exc.status == 409:
            message = f"apply conflicts with {conflict_summary(exc)}"
            return self._report(memory, apptask, live, Sync.conflicted("ApplyConflict", message),
                                Result(Outcome.CONFLICT, error=exc), diff.Action.CONFLICT)
        if rejected(exc):
            message = exc.message or str(exc)
            now = self.clock()
            memory.rejection = self.rejections.refused(
                memory.rejection, generation, self.deployments.get(memory.key), message, now)
            return self._invalid(memory, apptask, Sync.rejected(message),
                                 memory.rejection.retry_at - now)
        return self._failed(memory, apptask, live, exc)

    def _invalid(self, memory: Memory, apptask: Obj, sync: Sync,
                 retry_in: float | None = None) -> Result:
        return self._report(memory, apptask, self.deployments.get(memory.key), sync,
                            Result(Outcome.INVALID, requeue_after=retry_in), diff.Action.INVALID)

    def _report(self, memory: Memory, apptask: Obj, live: Obj | None, sync: Sync,
                result: Result, plan_action: diff.Action, action: str = "Apply") -> Result:
        """Finish with a problem that a person should see: logged and posted as a Warning
        Event when it first shows in the status, not again on every retry or resync."""
        result = self._finish(memory, apptask, live, sync, result, plan_action=plan_action)
        if result.status_updated:
            log.warning("%s: %s: %s", memory.key, sync.reason, sync.message)
            self._event(apptask, "Warning", sync.reason, action, sync.message)
        return result

    def _failed(self, memory: Memory, apptask: Obj, live: Obj | None, exc: ApiError) -> Result:
        log.warning("%s: error: %s", memory.key, exc)
        if transient(exc) and not self.dry_run and \
                self._failing_for(memory) < self.degraded_after:
            return Result(Outcome.ERROR, error=exc)  # retried; the status is left as it is
        return self._finish(memory, apptask, live, Sync.failed(str(exc)),
                            Result(Outcome.ERROR, error=exc), plan_action=diff.Action.ERROR)

    def _failing_for(self, memory: Memory) -> float:
        """Seconds since the AppTask's current run of transient failures began."""
        now = self.clock()
        if memory.failing_since is None:
            memory.failing_since = now
        return now - memory.failing_since

    def _finish(self, memory: Memory, apptask: Obj, deployment: Obj | None, sync: Sync,
                result: Result, plan_action: diff.Action | None = None) -> Result:
        """Write the status if it changed (never in dry-run); attach the plan in dry-run. The
        Service's problem, if this reconcile found one, is reported in place of Synced."""
        sync, of_service = (memory.service_sync, True) if sync.ok and \
            memory.service_sync is not None else (sync, False)
        if self.dry_run:
            plan = diff.Plan(str(memory.key), plan_action or diff.Action.UNCHANGED,
                             detail=sync.message if plan_action else "")
            return dataclasses.replace(result, plan=plan)
        if memory.service_vanished_at is not None:  # written once it is known to be gone
            return result
        settle = self._settling(memory, deployment)
        if settle > 0 and sync.ok:
            return dataclasses.replace(result, requeue_after=settle)
        service_ = self.services.get(memory.key)
        basis = _status_basis(apptask, deployment, service_, sync)
        if basis is not None and memory.status_basis == basis:
            return result  # computed from the same versions: still current
        wanted = status.compute(apptask, deployment, sync, self.wallclock(), service_)
        if status.patch_for(apptask.get("status"), wanted) is None:
            memory.status_basis = basis
            return result
        hold = self._status_hold(memory, apptask.get("status"), wanted)
        if hold > 0:
            return dataclasses.replace(result, requeue_after=min(
                hold, result.requeue_after or hold))
        key = memory.key
        try:
            answer = self.kube.patch(APPTASKS.path(key.namespace, key.name, "status"),
                                     _status_write(apptask, wanted), JSON_PATCH)
        except ApiError as exc:
            if exc.status == 404 or failed_test(exc):  # deleted (and maybe created again):
                return result  # what is there now comes with its own watch events
            log.warning("%s: status patch failed: %s", key, exc)
            return dataclasses.replace(result, error=_first_error(result.error, exc))
        self.apptask_answers.record_write(answer)
        memory.status_at = self.clock()
        log.info("%s: status updated (phase %s)", key, wanted["phase"])
        if of_service and sync.reason != "FieldFight" and _synced_said(apptask) != (
                sync.reason, sync.message):  # first shown (a fight is reported as it starts)
            log.warning("%s: %s: %s", key, sync.reason, sync.message)
            self._event(apptask, "Warning", sync.reason, "Apply", sync.message)
        return dataclasses.replace(result, status_updated=True)

    def _status_hold(self, memory: Memory, current: Obj | None, wanted: Obj) -> float:
        """Seconds to hold a status write that only reports progress, so that one AppTask's
        status is written at most once per status_min_interval during a rollout (0: write now).
        A new generation, phase or condition status is written at once."""
        written = memory.status_at
        if self.settling.settle <= 0 or written is None or not status.progress_only(current,
                                                                                 wanted):
            return 0.0
        return max(0.0, written + self.status_min_interval - self.clock())

    def _settling(self, memory: Memory, deployment: Obj | None) -> float:
        """Seconds to hold the status write while the Deployment controller has not yet
        observed the controller's last apply (0: write now)."""
        if deployment is None or memory.applied_at is None:
            return 0.0
        now = self.clock()
        if _rollout_unobserved(deployment):
            return self.settling.hold(memory.applied_at, now)
        self.settling.observed(memory.applied_at, now)
        memory.applied_at = None
        return 0.0

    def _event(self, apptask: Obj, type_: str, reason: str, action: str, note: str) -> None:
        if not self.dry_run:
            self.events.record(apptask, type_, reason, action, note)
