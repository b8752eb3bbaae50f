"""Small helpers for integration tests: AppTask bodies and reads of the objects under test, and
the controller run in the test's own process with a client whose requests a test can hook (to
force the interleavings of races)."""

from __future__ import annotations

import contextlib
import copy
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ssa_controller.client.kube import WRITE_METHODS, Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, SERVICES, Obj
from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.controller import Controller
from ssa_controller.envtest import ControlPlane, poll_until
from ssa_controller.envtest.audit import AuditEvent, AuditLog, overlapping, write_spans
from ssa_controller.runtime.events import EventRecorder
from ssa_controller.serving.metrics import Metrics
from ssa_controller.settings.config import parse_config
from ssa_controller.sharded import Membership

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
CONTROLLER_NAMESPACE = "ssa-controller-system"
TEST_USERS = ("controller", "controller-2")
CONTROLLER = TEST_USERS[0]
"""The identity the controller under test runs as."""
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
SHARDING_ROLES = frozenset({"ssa-controller-sharding", "ssa-controller-shard-leases"})
"""The roles of manifests/rbac.yaml that sharding alone needs (test_sharding.py tests them)."""


def scoped(namespace: str, **config: object) -> dict[str, object]:
    """A controller config restricted to one test namespace."""
    return {"namespaces": [namespace], **config}


def apptask(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "nginx:1.25", **spec}}


def put_apptask(kube: Kube, obj: dict[str, Any], manager: str = "tests") -> dict[str, Any]:
    """Create or replace an AppTask's spec (server-side apply as the test user)."""
    meta = obj["metadata"]
    return kube.apply(APPTASKS.path(meta["namespace"], meta["name"]), obj, field_manager=manager,
                      force=True)


def get_deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return _get_or_none(kube, DEPLOYMENTS.path(namespace, name))


def get_service(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return _get_or_none(kube, SERVICES.path(namespace, name))


def _get_or_none(kube: Kube, path: str) -> dict[str, Any] | None:
    try:
        return kube.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def get_apptask(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(APPTASKS.path(namespace, name))


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def status_of(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return get_apptask(kube, namespace, name).get("status", {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def kubectl(cluster: ControlPlane, *args: str,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl as the cluster's admin; a failure raises."""
    return subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=60, check=True)


def rbac_objects(users: tuple[str, ...] = TEST_USERS) -> list[dict[str, Any]]:
    """manifests/rbac.yaml, with the bindings' subjects extended to `users` (the test users)."""
    objects = [o for o in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text()) if o]
    for obj in objects:
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            obj["subjects"] = obj.get("subjects", []) + [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}
                for user in users]
    return objects


def rbac_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text()) if d]


def manifest_roles(sharding: bool = False) -> dict[str, dict[str, Any]]:
    """The Roles and ClusterRoles of manifests/rbac.yaml bound to the controller's service
    account, by name (not metrics-reader: that one is for scrapers): those sharding alone needs
    (SHARDING_ROLES), or the others."""
    docs = rbac_docs()
    bound = {(d["roleRef"]["kind"], d["roleRef"]["name"]) for d in docs
             if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
             and {"kind": "ServiceAccount", "name": "ssa-controller",
                  "namespace": CONTROLLER_NAMESPACE} in d["subjects"]}
    return {d["metadata"]["name"]: d for d in docs
            if (d["kind"], d["metadata"].get("name")) in bound
            and (d["metadata"]["name"] in SHARDING_ROLES) == sharding}


def rule_triples(sharding: bool = False) -> list[tuple[str, str, str, str]]:
    """Every (role name, apiGroup, resource, verb) granted to the controller by
    manifests/rbac.yaml (see manifest_roles)."""
    return [(name, group, resource, verb)
            for name, role in manifest_roles(sharding).items()
            for rule in role["rules"]
            for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", [])
            for verb in rule["verbs"]]


def without(role: dict[str, Any], group: str, resource: str, verb: str) -> dict[str, Any]:
    """`role` with exactly one (group, resource, verb) removed (rules split per resource)."""
    reduced = copy.deepcopy(role)
    reduced["rules"] = [
        {"apiGroups": [g], "resources": [r], "verbs": verbs}
        for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
        if (verbs := [v for v in rule["verbs"] if (g, r, v) != (group, resource, verb)])]
    return reduced


def allowed(admin: Kube, user: str, namespace: str, group: str, resource: str,
            verb: str) -> bool:
    plural, _, subresource = resource.partition("/")
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "resourceAttributes": {
                  "namespace": namespace, "group": group, "resource": plural,
                  "subresource": subresource, "verb": verb}}}
    return bool(admin.create(SAR_PATH, review)["status"].get("allowed"))


def failure_without(admin: Kube, role: dict[str, Any], rule: tuple[str, str, str], scope: str,
                    run: Callable[[], object], stop: Callable[[], object],
                    unneeded: str) -> str:
    """How `run` fails (its AssertionError's text) once `role` no longer grants the (group,
    resource, verb) `rule` to the user "controller" in `scope`; `stop` ends what it started; the
    role is restored after. Passing means the rule is not needed: AssertionError `unneeded`."""
    group, resource, verb = rule
    admin.apply(rbac_path(role), without(role, group, resource, verb), field_manager="tests",
                force=True)
    try:
        poll_until(lambda: not allowed(admin, CONTROLLER, scope, group, resource, verb),
                   timeout=10, message=f"{verb} {resource} revoked from user {CONTROLLER}")
        try:
            run()
        except AssertionError as exc:
            return str(exc)
        raise AssertionError(unneeded)
    finally:
        stop()
        admin.apply(rbac_path(role), role, field_manager="tests", force=True)
        poll_until(lambda: allowed(admin, CONTROLLER, scope, group, resource, verb),
                   timeout=10, message=f"{verb} {resource} restored")


def rbac_path(obj: dict[str, Any]) -> str:
    plural = obj["kind"].lower() + "s"
    namespace = obj["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/rbac.authorization.k8s.io/v1{scope}/{plural}/{obj['metadata']['name']}"


def apply_rbac(admin: Kube, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        admin.apply(rbac_path(obj), obj, field_manager="tests", force=True)


def controller_writes(audit: AuditLog, since: int, namespace: str,
                      lease: str | None = None) -> list[AuditEvent]:
    """The test users' writes after `since`: every write to `namespace` (Deployments, AppTask
    status, Events) and, with `lease`, the accepted writes of that Lease in the controller
    namespace (a lost race to create or update it is refused and changes nothing)."""
    writes = [e for e in audit.select(since, namespace=namespace, writes=True)
              if e.user in TEST_USERS]
    if lease is not None:
        writes += [e for e in audit.select(since, resource="leases", namespace=CONTROLLER_NAMESPACE,
                                           name=lease, writes=True)
                   if e.user in TEST_USERS and e.code is not None and e.code < 400]
    return writes


def assert_one_writer_at_a_time(writes: list[AuditEvent]) -> list[str]:
    """Assert that no two identities wrote during the same period (each one's writes, first to
    last, come before or after all of another's); return the writers in the order they wrote."""
    spans = write_spans(writes)
    clashes = overlapping(spans)
    order = [(e.user, e.verb, e.target, e.received.time().isoformat())
             for e in sorted(writes, key=lambda e: e.received)]
    assert not clashes, f"two writers at once: {clashes}; writes: {order}"
    return [span.user for span in spans]


class Rival:
    """Another controller that sets spec.replicas=5 every 200 ms until stopped."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.path = kube, DEPLOYMENTS.path(namespace, name)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.kube.patch(self.path, {"spec": {"replicas": 5}}, MERGE_PATCH,
                            {"fieldManager": "rival-controller"})

    def __enter__(self) -> Rival:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def unowned_deployment(namespace: str, name: str, labels: dict[str, str],
                       **container: Any) -> dict[str, Any]:
    """A Deployment of `name` that no AppTask owns (as a person or kubectl would make it), its
    selector and pod labels `labels`, its one container "app" (nginx:1.25) with `container`."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "app", "image": "nginx:1.25", **container}]}}}}


class Usage(NamedTuple):
    """A process's resident memory (KiB), threads and open file descriptors, from /proc."""
    rss: int
    threads: int
    fds: int


def process_usage(pid: int) -> Usage:
    fields = dict(line.split(":", 1)
                  for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return Usage(int(fields["VmRSS"].split()[0]), int(fields["Threads"]),
                 len(list(Path(f"/proc/{pid}/fd").iterdir())))


def usage_back_to(pid: int, threads: int, fds: int, timeout: float = 15) -> Usage:
    """The process's usage once it has at most `threads` threads and `fds` descriptors. The
    thread and socket that served a request just answered (a metrics scrape) take a moment to
    end; leaked ones never do, and the wait fails naming the counts."""
    def back() -> Usage | None:
        usage = process_usage(pid)
        return usage if usage.threads <= threads and usage.fds <= fds else None

    return poll_until(back, timeout=timeout, interval=0.2,
                      message=f"back to {threads} threads and {fds} file descriptors"
                              f" (now {process_usage(pid)})")


Match = Callable[[str, str, Mapping[str, Any]], bool]
"""Whether a request (method, path, query parameters) is the one to hook."""
Around = Callable[[Callable[[], Obj]], Obj]
"""What a hooked request does instead of being sent: given the function that sends it, the
answer it returns (or raises)."""


class HookedKube(Kube):
    """The controller's client in an in-process test: it keeps every write it sends (`writes`:
    method, path, body), and `hook(match, around)` makes the next request that matches go
    through `around`, so a test can act between a request and its answer's use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[tuple[str, str, Any]] = []
        self._hooks: list[tuple[Match, Around, threading.Event]] = []
        self._hooks_lock = threading.Lock()

    def hook(self, match: Match, around: Around) -> threading.Event:
        """Hook the next request that matches; the event is set once the hook has run."""
        done = threading.Event()
        with self._hooks_lock:
            self._hooks.append((match, around, done))
        return done

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str | None = "application/json",
                timeout: float | None = None) -> Obj:
        def send() -> Obj:
            return super(HookedKube, self).request(method, path, params=params, body=body,
                                                   content_type=content_type, timeout=timeout)
        if method in WRITE_METHODS:
            self.writes.append((method, path, body))
        with self._hooks_lock:
            found = next((h for h in self._hooks if h[0](method, path, params or {})), None)
            if found is not None:
                self._hooks.remove(found)
        if found is None:
            return send()
        try:
            return found[1](send)
        finally:
            found[2].set()


def controller_client(cluster: ControlPlane, folder: Path, cls: type[Kube] = HookedKube) -> Any:
    """A `cls` client of the control plane as the controller's user (bound by the manifests'
    RBAC), its kubeconfig written in `folder`."""
    return cls.from_kubeconfig(str(cluster.write_kubeconfig(CONTROLLER, folder / "kubeconfig")))


@contextlib.contextmanager
def in_process(kube: Kube, namespace: str, post_events: bool = False, shard: str | None = None,
               **config: Any) -> Iterator[Controller]:
    """The real Controller in this process, its watches and workers on `kube`, restricted to
    `namespace` (no leader election, an hourly resync, Events posted only if `post_events`;
    `config` adds keys); stopped, and `kube` closed, after the block. With `shard`, it is that
    shard of a sharded controller (its AppTasks only; no sharder runs)."""
    settings = parse_config({"namespaces": [namespace], "resync": {"period": "1h"},
                             "leaderElection": {"enabled": False}, **config})
    events = EventRecorder(kube, instance="test", qps=settings.events.qps,
                           burst=settings.events.burst, enabled=post_events)
    metrics = Metrics()
    membership = None if shard is None else Membership(shard, metrics.sharding("test", shard))
    controller = Controller(settings, kube, events, metrics, membership=membership)
    stop = threading.Event()
    events.start()
    controller.start_watches(stop)
    try:
        assert controller.wait_synced(30)
        controller.start_workers()
        yield controller
    finally:
        stop.set()
        controller.stop_watches()
        controller.stop_workers()
        events.stop()
        kube.close()
