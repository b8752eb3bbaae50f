"""Reconciles one AppTask: decide from the cache, apply the Deployment, write the status.

The pipeline for a key: look the AppTask up in the cache -> render the apply body (invalid
spec: status, no retry) -> a generation the API server refused waits for its slow retry (from
memory, without a request) -> a paused AppTask gets its status only (a dry run goes on, to plan
what would happen once unpaused) -> find the Deployment in the cache (none: the apply creates it
under a create-only precondition; only when the server answers that one exists is it read and
judged) -> compare body, live object and field ownership -> if something drifted, check for a
fight, transfer ownership where needed (adoption; hand-off of a released `replicas`), then
server-side apply -> compute the status and patch it only if it differs. The outcome is a Result
the controller's one switch turns into forget / requeue-after / rate-limited retry.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .apptask import adopt, desired, diff, drift, status
from .apptask.fights import Fight, FightTracker
from .apptask.outcomes import Outcome
from .apptask.settle import StatusSettle
from .apptask.status import Sync
from .client.kube import APPTASKS, DEPLOYMENTS, JSON_PATCH, ApiError, Kube, failed_test, rfc3339
from .runtime import fieldset
from .runtime.backoff import ItemBackoff
from .runtime.store import Cached, Store
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


def _first_error(earlier: ApiError | None, later: ApiError) -> ApiError:
    """The error of a reconcile two of whose requests failed: the first, unless the later one
    carries a longer Retry-After, which the retry must honour."""
    if earlier is None or (later.retry_after or 0.0) > (earlier.retry_after or 0.0):
        return later
    return earlier


def conflict_summary(error: ApiError) -> str:
    """'"kubectl" over .spec.replicas; ...' from a 409 apply conflict."""
    causes = (error.body or {}).get("details", {}).get("causes") or []
    by_manager: dict[str, list[str]] = {}
    for cause in causes:
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


def namespace_closed(error: ApiError) -> bool:
    """Whether the server refused to create in a namespace that is being terminated (403 with
    the cause NamespaceTerminating: "unable to create new content in namespace X because it is
    being terminated", as v1.20 answers) or is gone (404 about the namespace itself). No retry
    can succeed there, and the deletion of everything in the namespace is on its way."""
    details = (error.body or {}).get("details") or {}
    if error.status == 403:
        causes = details.get("causes") or ()
        return (any(c.get("reason") == "NamespaceTerminating" for c in causes)
                or "because it is being terminated" in error.message)
    return error.status == 404 and details.get("kind") == "namespaces"


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


class Teardowns:
    """Namespaces the server said are closed (being terminated), with the AppTasks that were in
    them then: those are skipped without a request until their deletion is seen. Nothing can be
    created in a terminating namespace, so an AppTask with another uid proves the namespace was
    re-created and is reconciled as usual. Pure."""

    def __init__(self) -> None:
        self._members: dict[str, dict[str, str]] = {}
        """namespace -> {key: uid} of the AppTasks cached when the refusal came."""

    def record(self, namespace: str, members: Mapping[str, str]) -> None:
        self._members[namespace] = dict(members)

    def holds(self, key: str, uid: str) -> bool:
        """Whether the AppTask `key` with `uid` is in a namespace known to be closing."""
        return self._members.get(key.split("/", 1)[0], {}).get(key) == uid

    def forget(self, key: str) -> None:
        """The AppTask is deleted; a namespace with none left is forgotten."""
        namespace = key.split("/", 1)[0]
        members = self._members.get(namespace)
        if members is not None:
            members.pop(key, None)
            if not members:
                del self._members[namespace]

    def __len__(self) -> int:
        return len(self._members)


@dataclass(frozen=True)
class _Rejection:
    """A refused apply: of which generation, against which Deployment, when to try again."""

    generation: int
    deployment: tuple[str, int] | None
    message: str
    retry_at: float


def deployment_version(deployment: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """What a refused apply is remembered against: the cached Deployment's uid and generation
    (None: not cached). Re-creating the Deployment or changing its spec changes it."""
    if deployment is None:
        return None
    meta = deployment["metadata"]
    return str(meta.get("uid", "")), int(meta.get("generation", 0))


class Rejections:
    """Generations the API server refused, and when to try each again. A refusal is not always
    about the spec (an admission webhook, an immutable field of an adopted Deployment), so a
    refused generation is retried with per-key capped exponential backoff, and at once when its
    Deployment changes. Decides from memory alone: a resync sends no request before the retry is
    due. Pure; the time is passed in."""

    def __init__(self, backoff: ItemBackoff) -> None:
        self._backoff = backoff
        self._rejections: dict[str, _Rejection] = {}

    def record(self, key: str, generation: int, deployment: Mapping[str, Any] | None,
               message: str, now: float) -> float:
        """The apply of `generation` was refused with `message`; returns the seconds until the
        next try."""
        delay = self._backoff.when(key)
        self._rejections[key] = _Rejection(generation, deployment_version(deployment), message,
                                           now + delay)
        return delay

    def waiting(self, key: str, generation: int, deployment: Mapping[str, Any] | None,
                now: float) -> tuple[str, float] | None:
        """(the refusal's message, seconds left) while the refused `generation` must wait; None
        when it may be applied: nothing refused, a new generation, the Deployment changed, or
        the retry is due."""
        rejection = self._rejections.get(key)
        if rejection is None:
            return None
        if rejection.generation != generation:
            self.forget(key)
            return None
        if rejection.deployment != deployment_version(deployment) or now >= rejection.retry_at:
            return None
        return rejection.message, rejection.retry_at - now

    def forget(self, key: str) -> None:
        """After an accepted apply, and when the AppTask is deleted."""
        self._rejections.pop(key, None)
        self._backoff.forget(key)

    def __len__(self) -> int:
        return len(self._rejections)


def item_backoff(config: BackoffConfig) -> ItemBackoff:
    """A per-key backoff as `backoff.*` configures it."""
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


def _was_synced(apptask: Obj) -> bool:
    """Whether the status says the Deployment held this generation of the spec (Synced, or
    since then fought over): a difference now is another writer's change."""
    st = apptask.get("status") or {}
    reasons = {c.get("type"): c.get("reason") for c in st.get("conditions") or ()}
    return st.get("observedGeneration") == _generation(apptask) and \
        reasons.get("Synced") in ("Synced", "FieldFight")


def _rollout_unobserved(deployment: Obj) -> bool:
    observed = deployment.get("status", {}).get("observedGeneration", 0)
    return int(deployment["metadata"].get("generation", 0)) > int(observed)


class Reconciler:
    """Turns one AppTask key into at most one apply and one status patch."""

    def __init__(self, config: Config, kube: Kube, apptasks: Store, deployments: Store,
                 fights: FightTracker, events: EventSink,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], str] = rfc3339, shard: str | None = None) -> None:
        self.config = config
        self.shard = shard
        """The shard this process is, with sharding (its name labels what it applies)."""
        self.kube = kube
        self.apptasks = apptasks
        self.deployments = deployments
        self.fights = fights
        self.rejections = Rejections(item_backoff(config.backoff))
        self.events = events
        self.clock = clock
        self.wallclock = wallclock
        self._status_at: dict[str, float] = {}
        """When the controller last wrote each AppTask's status (for status_min_interval)."""
        self._in_sync: dict[str, tuple[Any, ...]] = {}
        """The last comparison (see _comparison) that found the Deployment in sync, per key."""
        self._uncached: set[str] = set()
        """Keys whose Deployment the create-only apply found existing outside the cache."""
        self.status_min_interval = STATUS_MIN_INTERVAL
        self.teardowns = Teardowns()
        self.creation = CreatePrecondition()
        self._vanished: dict[str, float] = {}
        """When a Deployment the AppTask had was first found missing (see vanished_grace)."""
        self.vanished_grace = VANISHED_GRACE
        """0 in one-pass runs, where no later reconcile would re-create the Deployment."""
        self._failing_since: dict[str, float] = {}
        """When each AppTask failing with transient errors first failed (see transient())."""
        self.degraded_after = config.backoff.degraded_after
        """How long transient failures last before the status says Degraded; 0 in one-pass
        runs, where no retry follows."""
        self.settling = StatusSettle()
        """Status writes held for the Deployment controller to observe an apply; its `settle`
        is 0 where nothing will come back to write the status later (one-pass runs): then
        statuses are neither held for the rollout nor coalesced."""

    def found_elsewhere(self, key: str) -> None:
        """The Deployment of `key` may exist outside the cache (with sharding: the AppTask moved
        in, and its Deployment carries the label of the shard it comes from): read it before
        applying, rather than try to create it."""
        self._uncached.add(key)

    def forget(self, key: str) -> None:
        """Drop everything kept about a deleted AppTask."""
        self.fights.forget(key)
        self.rejections.forget(key)
        self.settling.forget(key)
        self._status_at.pop(key, None)
        self._in_sync.pop(key, None)
        self._uncached.discard(key)
        self.teardowns.forget(key)
        self._vanished.pop(key, None)
        self._failing_since.pop(key, None)

    @property
    def dry_run(self) -> bool:
        return self.config.dry_run

    def reconcile(self, key: str) -> Result:
        result = self._reconcile(key)
        failing = result.outcome is Outcome.ERROR and result.error is not None \
            and transient(result.error)
        if not failing:  # the run of transient failures, if any, is over
            self._failing_since.pop(key, None)
        return result

    def _reconcile(self, key: str) -> Result:
        apptask = self.apptasks.get(key)
        if apptask is None or "deletionTimestamp" in apptask["metadata"]:
            self.forget(key)
            return self._skipped(key, "the AppTask is being deleted")
        if self.teardowns.holds(key, apptask["metadata"].get("uid", "")):
            return self._skipped(key, "its namespace is being deleted")  # and it with it
        try:
            body = desired.render(apptask, self.config.pod_template, self.shard)
        except desired.InvalidSpec as exc:
            return self._invalid(key, apptask, Sync.invalid(str(exc)))
        cached = self.deployments.cached(key)
        live = None if cached is None else cached.obj
        waiting = self.rejections.waiting(key, _generation(apptask), live, self.clock())
        if waiting is not None:
            message, retry_in = waiting
            return self._finish(key, apptask, live, Sync.rejected(message),
                                Result(Outcome.INVALID, requeue_after=retry_in),
                                plan_action=diff.Action.INVALID)
        if not apptask.get("spec", {}).get("paused"):
            return self._reconcile_deployment(key, apptask, body, cached)
        if self.dry_run:  # the plan shows what would happen once it is unpaused
            result = self._reconcile_deployment(key, apptask, body, cached)
            return dataclasses.replace(result, plan=result.plan and result.plan.paused())
        return self._paused(key, apptask, body, cached)

    def _reconcile_deployment(self, key: str, apptask: Obj, body: Obj,
                              cached: Cached | None) -> Result:
        """From the cached Deployment, or its absence, to the apply."""
        live = None if cached is None else cached.obj
        if live is None:
            wait = self._vanished_wait(key, apptask)
            if wait > 0:
                return self._skipped(key, "its Deployment vanished; it is created again unless "
                                     "the AppTask's deletion is seen first", requeue_after=wait)
        else:  # there (again): a later disappearance waits its whole grace
            self._vanished.pop(key, None)
        if live is None and (key in self._uncached or not self.creation.sent):
            try:  # known to exist without our label, or creations read first: read it
                cached = self._fetch(key)
            except ApiError as exc:
                return self._failed(key, apptask, None, exc)
            if cached is None:
                self._uncached.discard(key)
            live = None if cached is None else cached.obj
        if live is not None and "deletionTimestamp" in live["metadata"]:
            # its DELETED event enqueues the AppTask again
            return self._skipped(key, f"Deployment {live['metadata']['name']} is being deleted; "
                                 "it is created again once it is gone")
        return self._converge_unless_foreign(key, apptask, body, cached)

    def _paused(self, key: str, apptask: Obj, body: Obj, cached: Cached | None) -> Result:
        """spec.paused: nothing is sent but the status, which says whether the Deployment
        matches the spec all the same (from the cache)."""
        if cached is None:
            return self._finish(key, apptask, None, Sync.paused(False), Result(Outcome.SKIPPED))
        in_sync = False
        if status.controls(apptask, cached.obj):
            found = drift.compute(body, cached.obj, fieldset.applied_by(
                cached.owners, self.config.field_manager))
            in_sync = not (found.changed or found.stale)
        return self._finish(key, apptask, cached.obj, Sync.paused(in_sync),
                            Result(Outcome.SKIPPED))

    def _skipped(self, key: str, why: str, requeue_after: float | None = None) -> Result:
        """Nothing to do now; in dry-run the plan says why."""
        plan = diff.Plan(key, diff.Action.SKIPPED, detail=why) if self.dry_run else None
        return Result(Outcome.SKIPPED, requeue_after=requeue_after, plan=plan)

    def _vanished_wait(self, key: str, apptask: Obj) -> float:
        """Seconds to wait before re-creating a Deployment the AppTask had (0: go ahead)."""
        if not apptask.get("status", {}).get("deploymentName"):
            return 0.0  # never had one: create it at once
        now = self.clock()
        since = self._vanished.setdefault(key, now)
        if now >= since + self.vanished_grace:
            del self._vanished[key]
            return 0.0
        return since + self.vanished_grace - now

    def _namespace_closed(self, key: str, exc: ApiError) -> Result:
        """The namespace is being torn down: skip its AppTasks until their deletion is seen; no
        status write, no Event, no retry (none of them could succeed)."""
        namespace = key.split("/", 1)[0]
        prefix = f"{namespace}/"
        members = {k: str(task["metadata"].get("uid", "")) for k in self.apptasks.keys()
                   if k.startswith(prefix) and (task := self.apptasks.get(k)) is not None}
        self.teardowns.record(namespace, members)
        log.info("%s: namespace %s is being deleted; its %d AppTasks wait for their deletion "
                 "(%s)", key, namespace, len(members), exc.message)
        return self._skipped(key, "its namespace is being deleted")

    def _found_uncached(self, key: str, apptask: Obj, body: Obj) -> Result:
        """The create-only apply found a Deployment the cache does not hold (one without the
        managed-by label: someone else's, or ours with the label removed). Read it once and
        decide as for a cached one: refuse, adopt, or converge. Later tries read it first."""
        self._uncached.add(key)
        try:
            cached = self._fetch(key)
        except ApiError as exc:
            return self._failed(key, apptask, None, exc)
        if cached is None or "deletionTimestamp" in cached.obj["metadata"]:  # retry: created next
            return self._failed(key, apptask, None, ApiError(
                409, "Conflict", f"Deployment {body['metadata']['name']} is being deleted; "
                "it is created again once it is gone"))
        return self._converge_unless_foreign(key, apptask, body, cached)

    def _fetch(self, key: str) -> Cached | None:
        """The Deployment when the cache has none (it may exist without our label)."""
        namespace, name = key.split("/", 1)
        try:
            return self.deployments.record(self.kube.get(DEPLOYMENTS.path(namespace, name)))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _converge_unless_foreign(self, key: str, apptask: Obj, body: Obj,
                                 cached: Cached | None) -> Result:
        """Converge, unless the Deployment is one this AppTask does not control and may not
        adopt."""
        if cached is not None and not status.controls(apptask, cached.obj):
            refusal = self._refuse_foreign(key, apptask, cached.obj)
            if refusal is not None:
                return refusal
        return self._converge(key, apptask, body, cached)

    def _refuse_foreign(self, key: str, apptask: Obj, live: Obj) -> Result | None:
        """None when a Deployment this AppTask does not control may be adopted, else why not."""
        name = live["metadata"]["name"]
        ref = desired.controller_ref(live)
        if ref is not None:
            return self._failed(key, apptask, live, ApiError(
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
        return self._report(key, apptask, live, Sync.conflicted("DeploymentExists", message),
                            Result(Outcome.CONFLICT), diff.Action.CONFLICT, action="Adopt")

    def _converge(self, key: str, apptask: Obj, body: Obj, cached: Cached | None) -> Result:
        manager = self.config.field_manager
        generation = _generation(apptask)
        now = self.clock()
        fight_found = False
        restored = ""
        if cached is not None:
            live, owners = cached.obj, cached.owners
            signature = _comparison(apptask, cached, manager)
            found = None if self._in_sync.get(key) == signature else drift.compute(
                body, live, fieldset.applied_by(owners, manager))
            if not found:
                self._in_sync[key] = signature
                log.debug("%s: unchanged", key)
                return self._finish(key, apptask, live, *self._calm_or_fight(
                    key, generation, body["metadata"]["name"], Result(Outcome.UNCHANGED)))
            if found.taken:
                fight_found = self._took_back(key, apptask, generation, owners, found, now)
                if _was_synced(apptask):  # so someone else changed what was applied
                    restored = drift.restored(
                        found.taken, body, live,
                        fieldset.taken_by_others(owners, manager, found.taken), UNKNOWN_WRITER)
            delay = self.fights.apply_delay(key, generation, now)
            if delay > 0:
                fight = self.fights.fight(key, generation, now)
                assert fight is not None
                return self._finish(key, apptask, live, self._fight_sync(fight),
                                    Result(Outcome.CONFLICT, requeue_after=delay,
                                           fight_detected=fight_found),
                                    plan_action=diff.Action.CONFLICT)
        return self._apply(key, apptask, body, cached, generation, fight_found, restored)

    def _took_back(self, key: str, apptask: Obj, generation: int, owners: fieldset.Owners,
                   found: drift.Drift, now: float) -> bool:
        takers = fieldset.taken_by_others(owners, self.config.field_manager, found.taken)
        managers = tuple(sorted(takers)) or (UNKNOWN_WRITER,)
        fields = tuple(fieldset.display(p) for p in found.taken)
        fight = self.fights.took_back(key, generation, managers, fields, now)
        if fight is None:
            return False
        message = self._fight_sync(fight).message
        log.warning("%s: fight detected: %s", key, message)
        self._event(apptask, "Warning", "FieldFight", "Apply", message)
        return True

    def _calm_or_fight(self, key: str, generation: int, name: str,
                       result: Result) -> tuple[Sync, Result]:
        """Synced, or, while a fight lasts, its Conflict and a look again once it may end."""
        fight = self.fights.fight(key, generation, self.clock())
        if fight is None:
            return Sync.synced(name), result
        return self._fight_sync(fight), dataclasses.replace(
            result, requeue_after=self.config.fights.window)

    @staticmethod
    def _fight_sync(fight: Fight) -> Sync:
        return Sync.conflicted(
            "FieldFight",
            f"{', '.join(fight.managers)} keeps taking back {', '.join(fight.fields)} "
            f"({fight.takebacks} take-backs); re-applying with growing backoff")

    def _apply(self, key: str, apptask: Obj, body: Obj, cached: Cached | None, generation: int,
               fight_found: bool, restored: str = "",
               checking: ApiError | None = None) -> Result:
        """Apply `body` (`restored`: what it takes back from other writers, to say so): a
        Deployment the cache does not hold under the CREATE_ONLY precondition while the server
        takes it, unless this apply is `checking` a create-only apply's refusal (see
        CreatePrecondition)."""
        namespace, name = key.split("/", 1)
        path = DEPLOYMENTS.path(namespace, name)
        live = None if cached is None else cached.obj
        create_only = live is None and self.creation.sent and checking is None
        try:
            if cached is not None and not self.dry_run:
                self._transfer_ownership(key, apptask, path, body, cached)
            answer = self.kube.apply(path, _create_only(body) if create_only else body,
                                     field_manager=self.config.field_manager,
                                     force=self.config.apply.force, dry_run=self.dry_run)
        except ApiError as exc:
            if create_only and exc.status == 409:
                self.creation.honoured()
                return self._found_uncached(key, apptask, body)
            if create_only and self.creation.suspect(exc):
                return self._read_then_create(key, apptask, body, generation, exc)
            return self._apply_failed(key, apptask, live, generation, exc)
        if create_only:
            self.creation.honoured()
        dropped = checking is not None and self.creation.refused()
        if dropped:
            log.warning("the API server refuses create-only applies (%s): from now on a "
                        "Deployment is read before it is created, and applied without the "
                        "precondition", checking)
        self.rejections.forget(key)
        if self.dry_run:
            plan = diff.plan(key, live, answer)
            return Result(Outcome.DRY_RUN if plan.changes else Outcome.UNCHANGED, plan=plan)
        # The answer is the Deployment as this apply left it, in sync with the body: its watch
        # event (the same version) costs no comparison.
        self._in_sync[key] = _comparison(apptask, self.deployments.record_write(answer),
                                         self.config.field_manager)
        self.fights.applied(key, generation, self.clock())
        what = restored or ("created" if live is None else "configured")
        log.info("%s: applied Deployment (%s)", key, what)
        self._event(apptask, "Normal", "Applied", "Apply",
                    f"Deployment {name}: {restored}" if restored else f"Deployment {name} {what}")
        if _rollout_unobserved(answer):
            self.settling.applied(key, self.clock())
        return self._finish(key, apptask, self.deployments.get(key), *self._calm_or_fight(
            key, generation, name, Result(Outcome.APPLIED, fight_detected=fight_found,
                                          precondition_dropped=dropped)))

    def _read_then_create(self, key: str, apptask: Obj, body: Obj, generation: int,
                          refusal: ApiError) -> Result:
        """The create-only apply was refused with `refusal`, perhaps for its precondition: read
        the Deployment, then apply without the precondition (see CreatePrecondition)."""
        try:
            cached = self._fetch(key)
        except ApiError as exc:
            return self._failed(key, apptask, None, exc)
        if cached is not None:  # there after all, outside the cache: judged as such
            self._uncached.add(key)
            return self._converge_unless_foreign(key, apptask, body, cached)
        return self._apply(key, apptask, body, None, generation, False, checking=refusal)

    def _transfer_ownership(self, key: str, apptask: Obj, path: str, body: Obj,
                            live: Cached) -> None:
        """Before the apply: adopt a Deployment this AppTask does not control yet (only once a
        dry-run shows the apply is accepted), and hand off a released `replicas` so that the
        apply does not remove it."""
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

    def _apply_failed(self, key: str, apptask: Obj, live: Obj | None, generation: int,
                      exc: ApiError) -> Result:
        if exc.reason == adopt.RACED:  # a lost race, not a problem to report: tried again
            log.info("%s: %s; trying again", key, exc.message)
            return Result(Outcome.CONFLICT, error=exc)
        if namespace_closed(exc):
            return self._namespace_closed(key, exc)
        if exc.status == 409:
            message = f"apply conflicts with {conflict_summary(exc)}"
            return self._report(key, apptask, live, Sync.conflicted("ApplyConflict", message),
                                Result(Outcome.CONFLICT, error=exc), diff.Action.CONFLICT)
        if rejected(exc):
            message = exc.message or str(exc)
            retry_in = self.rejections.record(key, generation, self.deployments.get(key),
                                              message, self.clock())
            return self._invalid(key, apptask, Sync.rejected(message), retry_in)
        return self._failed(key, apptask, live, exc)

    def _invalid(self, key: str, apptask: Obj, sync: Sync,
                 retry_in: float | None = None) -> Result:
        return self._report(key, apptask, self.deployments.get(key), sync,
                            Result(Outcome.INVALID, requeue_after=retry_in), diff.Action.INVALID)

    def _report(self, key: str, apptask: Obj, live: Obj | None, sync: Sync, result: Result,
                plan_action: diff.Action, action: str = "Apply") -> Result:
        """Finish with a problem that a person should see: logged and posted as a Warning
        Event when it first shows in the status, not again on every retry or resync."""
        result = self._finish(key, apptask, live, sync, result, plan_action=plan_action)
        if result.status_updated:
            log.warning("%s: %s: %s", key, sync.reason, sync.message)
            self._event(apptask, "Warning", sync.reason, action, sync.message)
        return result

    def _failed(self, key: str, apptask: Obj, live: Obj | None, exc: ApiError) -> Result:
        log.warning("%s: error: %s", key, exc)
        if transient(exc) and not self.dry_run and self._failing_for(key) < self.degraded_after:
            return Result(Outcome.ERROR, error=exc)  # retried; the status is left as it is
        return self._finish(key, apptask, live, Sync.failed(str(exc)),
                            Result(Outcome.ERROR, error=exc), plan_action=diff.Action.ERROR)

    def _failing_for(self, key: str) -> float:
        """Seconds since the AppTask's current run of transient failures began."""
        now = self.clock()
        return now - self._failing_since.setdefault(key, now)

    def _finish(self, key: str, apptask: Obj, deployment: Obj | None, sync: Sync,
                result: Result, plan_action: diff.Action | None = None) -> Result:
        """Write the status if it changed (never in dry-run); attach the plan in dry-run."""
        if self.dry_run:
            plan = diff.Plan(key, plan_action or diff.Action.UNCHANGED,
                             detail=sync.message if plan_action else "")
            return dataclasses.replace(result, plan=plan)
        settle = self._settling(key, deployment)
        if settle > 0 and sync.ok:
            return dataclasses.replace(result, requeue_after=settle)
        wanted = status.compute(apptask, deployment, sync, self.wallclock())
        if status.patch_for(apptask.get("status"), wanted) is None:
            return result
        hold = self._status_hold(key, apptask.get("status"), wanted)
        if hold > 0:
            return dataclasses.replace(result, requeue_after=min(
                hold, result.requeue_after or hold))
        namespace, name = key.split("/", 1)
        try:
            answer = self.kube.patch(APPTASKS.path(namespace, name, "status"),
                                     _status_write(apptask, wanted), JSON_PATCH)
        except ApiError as exc:
            if exc.status == 404 or failed_test(exc):  # deleted (and maybe created again):
                return result  # what is there now comes with its own watch events
            log.warning("%s: status patch failed: %s", key, exc)
            return dataclasses.replace(result, error=_first_error(result.error, exc))
        self.apptasks.record_write(answer)
        self._status_at[key] = self.clock()
        log.info("%s: status updated (phase %s)", key, wanted["phase"])
        return dataclasses.replace(result, status_updated=True)

    def _status_hold(self, key: str, current: Obj | None, wanted: Obj) -> float:
        """Seconds to hold a status write that only reports progress, so that one AppTask's
        status is written at most once per status_min_interval during a rollout (0: write now).
        A new generation, phase or condition status is written at once."""
        written = self._status_at.get(key)
        if self.settling.settle <= 0 or written is None or not status.progress_only(current,
                                                                                 wanted):
            return 0.0
        return max(0.0, written + self.status_min_interval - self.clock())

    def _settling(self, key: str, deployment: Obj | None) -> float:
        """Seconds to hold the status write while the Deployment controller has not yet
        observed the controller's last apply (0: write now)."""
        if deployment is None:
            return 0.0
        return self.settling.hold(key, not _rollout_unobserved(deployment), self.clock())

    def _event(self, apptask: Obj, type_: str, reason: str, action: str, note: str) -> None:
        if not self.dry_run:
            self.events.record(apptask, type_, reason, action, note)
