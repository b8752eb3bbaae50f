"""The seven scenarios. Each runs twice, in a fresh namespace each time: with the deliberately
bad controller, then with this controller as configured by default, under the same load; it
returns the figures of both side by side (see `results.Row`). Sizes are modest (a shared 2-core
machine runs the whole lab in minutes); durations scale with `seconds`."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, LEASES
from ssa_controller.client.wire import MERGE_PATCH, ApiError
from ssa_controller.envtest.audit import overlapping, write_spans
from ssa_controller.envtest.polling import PollTimeout, poll_until

from . import procs
from .bad._base import OWNER_LABEL
from .measure import Sampler, Window, rates, slope, writes
from .procs import ControllerProcess
from .results import Curve, ModeResult, Row
from .target import Target

log = logging.getLogger(__name__)
IMAGE = "nginx:1.25"
FIELD_MANAGER = "ssa-lab"
RIVAL = "lab-rival"
KINDS = ("bad", "ours")

# Our controller's defaults that bounds are computed from (config/controller.yaml).
BACKOFF_BASE = 0.5
TOKEN_BUCKET_QPS = 20
FIGHT_THRESHOLD = 3
FIGHT_BACKOFF = 5.0
DRIVER_THREADS = 4
"""Parallel requests of the lab's own load (creations, deletions)."""
RSS_GROWTH_MIB = 8.0
"""What ours may grow by after warm-up in the leak scenario (allocator noise, not a leak)."""


@dataclass
class Lab:
    target: Target
    seconds: float
    workdir: Path

    @property
    def kube(self) -> Kube:
        return self.target.client()

    @contextlib.contextmanager
    def controllers(self, kind: str, mode: str, namespace: str, replicas: int = 1,
                    leader_election: bool = False) -> Iterator[list[ControllerProcess]]:
        """`replicas` processes of the bad controller or of ours (roles kind, kind-2), ready."""
        started: list[ControllerProcess] = []
        try:
            for i in range(1, replicas + 1):
                role = kind if i == 1 else f"{kind}-{i}"
                kubeconfig = self.target.kubeconfig(role)
                started.append(
                    procs.bad(mode, kubeconfig, namespace, self.workdir, i) if kind == "bad"
                    else procs.ours(kubeconfig, namespace, self.workdir, replica=i,
                                    leader_election=leader_election))
            for process in started:
                process.wait_ready()
            yield started
        finally:
            for process in started:
                process.stop()

    def users(self, kind: str) -> list[str] | None:
        names = [self.target.user(kind), self.target.user(f"{kind}-2")]
        return None if names[0] is None else [n for n in names if n]


# ---- helpers

def put_apptask(kube: Kube, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": IMAGE, **spec}}
    return kube.apply(APPTASKS.path(namespace, name), body, field_manager=FIELD_MANAGER,
                      force=True)


def get_or_none(kube: Kube, path: str) -> dict[str, Any] | None:
    try:
        return kube.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def sleep_until(window: Window, moment: float) -> None:
    time.sleep(max(0.0, moment - window.elapsed()))


def per_minute(count: float, seconds: float) -> float:
    return count * 60.0 / seconds if seconds > 0 else 0.0


def owned(events: list[Any] | None, resources: tuple[str, ...]) -> list[Any] | None:
    return None if events is None else [e for e in writes(events) if e.resource in resources]


def _cmp(value: float | None, test: Callable[[float], bool]) -> bool | None:
    return None if value is None else test(value)


# ---- broken: a status that never settles

def broken(lab: Lab) -> ModeResult:
    tasks, s = 5, lab.seconds
    result = ModeResult("broken")
    figures: dict[str, dict[str, float | None]] = {}
    for kind in KINDS:
        with lab.target.namespace(f"broken-{kind}") as ns, lab.controllers(kind, "broken", ns):
            window = Window(lab.target.audit)
            for i in range(tasks):
                put_apptask(lab.kube, ns, f"task-{i}", replicas=0)
            sleep_until(window, s / 4)
            for i in range(tasks):  # one change of every AppTask
                put_apptask(lab.kube, ns, f"task-{i}", replicas=0, image="nginx:1.26")
            poll_until(lambda: all(_image(lab.kube, ns, f"task-{i}") == "nginx:1.26"
                                   for i in range(tasks)), timeout=60,
                       message=f"{kind}: every Deployment shows the change")
            quiet_from = max(s / 2, window.elapsed() + 1.0)
            sleep_until(window, quiet_from + s / 2)
            end = window.elapsed()
            users = lab.users(kind)
            events = window.events(users[0] if users else None, ns)
            done = owned(events, ("deployments", "apptasks"))
            figures[kind] = {
                "rate": None if done is None else per_minute(len(done) / tasks, end),
                "per_task": None if done is None else len(done) / tasks,
                "quiet": None if done is None else
                sum(1 for e in done if window.at(e) >= quiet_from),
            }
    changes = 2  # creation and one change per AppTask
    most = 3 * changes  # apply + status (+ one status retry) per change
    bad, ours = figures["bad"], figures["ours"]
    result.rows = [
        Row("broken", "API writes per AppTask per minute", bad["rate"], ours["rate"],
            f"<= {most} writes per AppTask ({changes} changes)",
            _cmp(bad["per_task"], lambda v: v > 3 * most),
            _cmp(ours["per_task"], lambda v: v <= most)),
        Row("broken", f"writes in the last {s / 2:g} s, all changes done", bad["quiet"],
            ours["quiet"], "0", _cmp(bad["quiet"], lambda v: v > 0),
            _cmp(ours["quiet"], lambda v: v == 0)),
    ]
    return result


def _image(kube: Kube, namespace: str, name: str) -> str | None:
    deployment = get_or_none(kube, DEPLOYMENTS.path(namespace, name))
    if deployment is None:
        return None
    image = deployment["spec"]["template"]["spec"]["containers"][0].get("image")
    return str(image) if image is not None else None


# ---- conflicting: a rival writer over spec.replicas

def conflicting(lab: Lab) -> ModeResult:
    s = lab.seconds
    result = ModeResult("conflicting")
    growth: dict[str, float] = {}
    applies: dict[str, int | None] = {}
    named: dict[str, float] = {}
    for kind in KINDS:
        with lab.target.namespace(f"conflicting-{kind}") as ns, \
                lab.controllers(kind, "conflicting", ns):
            put_apptask(lab.kube, ns, "fought", replicas=0)
            path = DEPLOYMENTS.path(ns, "fought")
            poll_until(functools.partial(get_or_none, lab.kube, path), timeout=60,
                       message=f"{kind}: Deployment created")
            stop = threading.Event()

            def rival(stop: threading.Event = stop, path: str = path) -> None:
                while not stop.wait(0.2):
                    with contextlib.suppress(ApiError):
                        lab.kube.patch(path, {"spec": {"replicas": 1}}, MERGE_PATCH,
                                       {"fieldManager": RIVAL})

            window = Window(lab.target.audit)
            writer = threading.Thread(target=rival, daemon=True)

            def generation(path: str = path) -> Any:
                return lab.kube.get(path)["metadata"]["generation"]

            with Sampler(generation, 0.2) as gen:
                writer.start()
                sleep_until(window, s)
                stop.set()
                writer.join(5)
            first, last = gen.points[0][1], gen.points[-1][1]
            growth[kind] = per_minute(last - first, gen.points[-1][0] - gen.points[0][0])
            result.curves.setdefault("conflicting", Curve(
                "conflicting: Deployment generation, rival writing every 200 ms",
                "generation (since start)", [], []))
            setattr(result.curves["conflicting"], kind,
                    [(t, g - first) for t, g in gen.points])
            users = lab.users(kind)
            events = window.events(users[0] if users else None, ns, resource="deployments",
                                   name="fought")
            applies[kind] = None if events is None else len(writes(events))
            status = lab.kube.get(APPTASKS.path(ns, "fought")).get("status", {})
            named[kind] = float(any(RIVAL in c.get("message", "")
                                    for c in status.get("conditions", [])
                                    if c.get("type") == "Conflict"))
    damped = FIGHT_THRESHOLD + 2 + s / FIGHT_BACKOFF  # take-backs before and after detection
    damped_rate = per_minute(2 * damped, s)  # each take-back: ours and the rival's generation
    result.rows = [
        Row("conflicting", "Deployment generations per minute", growth["bad"], growth["ours"],
            f"<= {damped_rate:.0f}/min (damped to fights.backoffBase)",
            growth["bad"] > damped_rate, growth["ours"] <= damped_rate),
        Row("conflicting", "the controller's applies of the Deployment", applies["bad"],
            applies["ours"], f"<= {damped:.0f}",
            _cmp(applies["bad"], lambda v: v > damped),
            _cmp(applies["ours"], lambda v: v <= damped)),
        Row("conflicting", f"status names the other manager ({RIVAL})", named["bad"],
            named["ours"], "1 (yes)", named["bad"] == 0, named["ours"] == 1, unit="yes/no"),
    ]
    return result


# ---- retry-bomb: every apply refused (a ResourceQuota allowing no Deployment: 403)

def retry_bomb(lab: Lab) -> ModeResult:
    s = lab.seconds
    result = ModeResult("retry-bomb")
    figures: dict[str, dict[str, float | None]] = {}
    curve = Curve("retry-bomb: requests for the refused Deployment", "requests/s", [], [],
                  log_y=True)
    for kind in KINDS:
        with lab.target.namespace(f"retry-bomb-{kind}") as ns:
            lab.kube.create(f"/api/v1/namespaces/{ns}/resourcequotas", {
                "metadata": {"name": "no-deployments"},
                "spec": {"hard": {"count/deployments.apps": "0"}}})
            with lab.controllers(kind, "retry-bomb", ns):
                window = Window(lab.target.audit)
                put_apptask(lab.kube, ns, "refused", replicas=0)
                sleep_until(window, s)
                users = lab.users(kind)
                events = window.events(users[0] if users else None, ns,
                                       resource="deployments", name="refused")
        if events is None:
            figures[kind] = {"mean": None, "peak": None, "attempts": None, "curve_ok": None}
            continue
        times = [window.at(e) for e in events if 0 <= window.at(e) < s]
        attempts = sorted(window.at(e) for e in events if e.verb == "patch")
        per_second = rates(times, 1.0, s)
        setattr(curve, kind, rates(times, 0.5, s))
        gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
        # capped exponential: the i-th wait is at least base * 2**i, less 10 % jitter (and
        # the first attempt may come before the first wait), never under the previous one.
        curve_ok = all(g >= 0.85 * BACKOFF_BASE * 2 ** i for i, g in enumerate(gaps))
        figures[kind] = {"mean": len(times) / s, "peak": max(v for _, v in per_second),
                         "attempts": float(len(attempts)), "curve_ok": float(curve_ok)}
    result.curves["retry-bomb"] = curve
    most = math.floor(math.log2(s / BACKOFF_BASE + 1)) + 2
    bad, ours = figures["bad"], figures["ours"]
    result.rows = [
        Row("retry-bomb", "requests/s for the refused object (mean)", bad["mean"], ours["mean"],
            f"<= {TOKEN_BUCKET_QPS} (token bucket)",
            _cmp(bad["mean"], lambda v: v > TOKEN_BUCKET_QPS),
            _cmp(ours["mean"], lambda v: v <= TOKEN_BUCKET_QPS)),
        Row("retry-bomb", "requests in the busiest second", bad["peak"], ours["peak"],
            f"<= {TOKEN_BUCKET_QPS}", _cmp(bad["peak"], lambda v: v > TOKEN_BUCKET_QPS),
            _cmp(ours["peak"], lambda v: v <= TOKEN_BUCKET_QPS)),
        Row("retry-bomb", f"apply attempts in {s:g} s", bad["attempts"], ours["attempts"],
            f"<= {most}, waits doubling from {BACKOFF_BASE:g} s",
            _cmp(bad["attempts"], lambda v: v > most),
            None if ours["attempts"] is None else
            bool(ours["attempts"] <= most and ours["curve_ok"])),
    ]
    return result


# ---- leaky: create/delete cycles, RSS and threads from /proc

def leaky(lab: Lab) -> ModeResult:
    s, batch = lab.seconds, 10
    result = ModeResult("leaky")
    figures: dict[str, dict[str, float]] = {}
    curve = Curve("leaky: controller RSS during create/delete cycles", "RSS (MiB)", [], [])
    for kind in KINDS:
        with lab.target.namespace(f"leaky-{kind}") as ns, \
                lab.controllers(kind, "leaky", ns) as (process,):
            cycles = 0
            window = Window(None)
            with Sampler(lambda: procs.usage(process.pid)[0] / 1024, 0.25) as rss, \
                    Sampler(lambda: procs.usage(process.pid)[1], 0.25) as threads, \
                    ThreadPoolExecutor(DRIVER_THREADS) as pool:
                while window.elapsed() < s:
                    names = [f"leak-{cycles}-{i}" for i in range(batch)]
                    list(pool.map(lambda n: put_apptask(lab.kube, ns, n, replicas=0), names))
                    list(pool.map(lambda n: lab.kube.delete(APPTASKS.path(ns, n)), names))
                    cycles += 1
                time.sleep(1.0)  # the controller catches up with the last cycle
        warm = s / 5  # after the first cycles: imports, caches and pools are warm
        steady = [p for p in rss.points if p[0] >= warm]
        growth = slope(steady) * (steady[-1][0] - steady[0][0]) if len(steady) > 1 else 0.0
        steady_threads = [v for t, v in threads.points if t >= warm]
        figures[kind] = {"growth": growth, "cycles": cycles,
                         "threads": max(steady_threads) - steady_threads[0],
                         "per_cycle": growth * 1024 / cycles if cycles else 0.0}
        setattr(curve, kind, rss.points)
    result.curves["leaky"] = curve
    bad, ours = figures["bad"], figures["ours"]
    grown = f"bad {bad['cycles']:.0f}, ours {ours['cycles']:.0f} cycles of {batch}"
    result.rows = [
        Row("leaky", f"RSS growth, MiB ({grown})", bad["growth"], ours["growth"],
            f"<= {RSS_GROWTH_MIB:g} MiB", bad["growth"] > max(2.0, 4 * ours["growth"]),
            ours["growth"] <= RSS_GROWTH_MIB),
        Row("leaky", "RSS slope, KiB per create/delete cycle", bad["per_cycle"],
            ours["per_cycle"], f"<= {RSS_GROWTH_MIB:g} MiB / cycles",
            bad["per_cycle"] > 4 * max(ours["per_cycle"], 20.0),
            ours["per_cycle"] * ours["cycles"] <= RSS_GROWTH_MIB * 1024),
        Row("leaky", "threads added", bad["threads"], ours["threads"], "<= 2",
            bad["threads"] >= bad["cycles"], ours["threads"] <= 2),
    ]
    return result


# ---- no-leader: two replicas

def no_leader(lab: Lab) -> ModeResult:
    tasks, s = 4, lab.seconds
    result = ModeResult("no-leader")
    figures: dict[str, dict[str, float | None]] = {}
    for kind in KINDS:
        with lab.target.namespace(f"no-leader-{kind}") as ns, \
                lab.controllers(kind, "no-leader", ns, replicas=2,
                                leader_election=kind == "ours"):
            if kind == "ours":
                poll_until(lambda: (get_or_none(lab.kube, LEASES.path(ns, "lab")) or {})
                           .get("spec", {}).get("holderIdentity"), timeout=60,
                           message="a leader elected")
            window = Window(lab.target.audit)
            for i in range(tasks):
                put_apptask(lab.kube, ns, f"task-{i}", replicas=0)
            sleep_until(window, s / 2)
            for i in range(tasks):
                put_apptask(lab.kube, ns, f"task-{i}", replicas=0, image="nginx:1.26")
            sleep_until(window, s)
            users, audit = lab.users(kind), lab.target.audit
            if users is None or audit is None:
                figures[kind] = {"shared": None, "overlaps": None}
                continue
            done = [e for e in writes(audit.select(window.mark, namespace=ns))
                    if e.user in users and e.resource in ("deployments", "apptasks")]
        writers: dict[str, set[str]] = {}
        for event in done:
            if event.resource == "deployments" and event.name:
                writers.setdefault(event.name, set()).add(event.user)
        figures[kind] = {"shared": float(sum(1 for w in writers.values() if len(w) > 1)),
                         "overlaps": float(len(overlapping(write_spans(done))))}
    bad, ours = figures["bad"], figures["ours"]
    result.rows = [
        Row("no-leader", f"Deployments (of {tasks}) written by both replicas", bad["shared"],
            ours["shared"], "0", _cmp(bad["shared"], lambda v: v > 0),
            _cmp(ours["shared"], lambda v: v == 0)),
        Row("no-leader", "pairs of replicas writing in the same period", bad["overlaps"],
            ours["overlaps"], "0", _cmp(bad["overlaps"], lambda v: v > 0),
            _cmp(ours["overlaps"], lambda v: v == 0)),
    ]
    return result


# ---- wrong-watch: unrelated Deployments elsewhere in the cluster

def unrelated(namespace: str, name: str) -> dict[str, Any]:
    """A Deployment no AppTask has anything to do with (no replicas, so no pods)."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def wrong_watch(lab: Lab) -> ModeResult:
    s = lab.seconds
    noise_count = max(20, int(10 * s))
    result = ModeResult("wrong-watch")
    figures: dict[str, float | None] = {}
    with lab.target.namespace("wrong-watch-noise") as noise:
        names = [f"unrelated-{i}" for i in range(noise_count)]
        with ThreadPoolExecutor(DRIVER_THREADS) as pool:
            list(pool.map(lambda n: lab.kube.create(DEPLOYMENTS.path(noise), unrelated(noise, n)),
                          names))
        for kind in KINDS:
            with lab.target.namespace(f"wrong-watch-{kind}") as ns, \
                    lab.controllers(kind, "wrong-watch", ns):
                put_apptask(lab.kube, ns, "mine", replicas=0)
                poll_until(lambda: get_or_none(lab.kube, DEPLOYMENTS.path(ns, "mine")),
                           timeout=60, message=f"{kind}: its own Deployment")
                if kind == "ours":
                    poll_until(lambda: lab.kube.get(APPTASKS.path(ns, "mine"))
                               .get("status", {}).get("phase") == "Ready", timeout=60,
                               message="ours: its AppTask Ready")
                time.sleep(1.0)  # its own Deployment's rollout settles
                window = Window(lab.target.audit)
                for i, name in enumerate(names):
                    sleep_until(window, i * s / noise_count)
                    lab.kube.patch(DEPLOYMENTS.path(noise, name),
                                   {"metadata": {"annotations": {"lab/touched": kind}}},
                                   MERGE_PATCH)
                sleep_until(window, s)
                users = lab.users(kind)
                events = window.events(users[0] if users else None)
                figures[kind] = (None if events is None
                                 else float(sum(1 for e in events if e.verb != "watch")))
    result.rows = [Row(
        "wrong-watch", f"requests caused by {noise_count} unrelated Deployment changes",
        figures["bad"], figures["ours"], "0 (beyond its watch stream)",
        _cmp(figures["bad"], lambda v: v >= noise_count),
        _cmp(figures["ours"], lambda v: v == 0))]
    return result


# ---- crash-loop: SIGKILL at random points during a burst of changes

def crash_loop(lab: Lab) -> ModeResult:
    s, tasks, rounds, deleted = lab.seconds, 50, 4, 10
    converge_timeout = 10.0 + s
    result = ModeResult("crash-loop")
    figures: dict[str, dict[str, float | None]] = {}
    chance = random.Random(11)
    for kind in KINDS:
        with lab.target.namespace(f"crash-loop-{kind}") as ns, \
                ThreadPoolExecutor(DRIVER_THREADS) as pool:
            kills = 0
            for r in range(rounds):  # 200 changes: 50 creations, updates, 10 deletions
                # each round of 50 changes reaches a running controller, killed at a random
                # point while it works on them, and restarted at once
                with _one(lab, kind, ns, ready=True) as process:
                    def change(i: int, r: int = r) -> None:
                        if r == rounds - 1 and i < deleted:
                            lab.kube.delete(APPTASKS.path(ns, f"task-{i}"))
                        else:
                            put_apptask(lab.kube, ns, f"task-{i}", replicas=0,
                                        image=f"nginx:1.{r}")
                    list(pool.map(change, range(tasks)))
                    time.sleep(chance.uniform(0.1, min(1.5, s / 4)))
                    process.kill()
                    kills += 1
            with _one(lab, kind, ns, ready=False):
                burst_end = time.monotonic()
                try:
                    poll_until(lambda: crash_state(lab.kube, ns)["converged"],
                               timeout=converge_timeout, interval=0.25)
                    took: float | None = time.monotonic() - burst_end
                except PollTimeout:
                    took = None
                state = crash_state(lab.kube, ns)
            figures[kind] = {**{k: float(v) for k, v in state.items()}, "took": took,
                             "kills": float(kills)}
    bad, ours = figures["bad"], figures["ours"]
    killed = f"{bad['kills']:.0f} / {ours['kills']:.0f} SIGKILLs"
    never = converge_timeout + 1
    result.rows = [
        Row("crash-loop", f"Deployments duplicated ({killed})", bad["duplicated"],
            ours["duplicated"], "0", bool(bad["duplicated"]), ours["duplicated"] == 0),
        Row("crash-loop", "Deployments orphaned", bad["orphaned"], ours["orphaned"], "0",
            bool(bad["orphaned"]), ours["orphaned"] == 0),
        Row("crash-loop", "AppTasks half-applied (status ahead of Deployment)",
            bad["half_applied"], ours["half_applied"], "0", bool(bad["half_applied"]),
            ours["half_applied"] == 0),
        Row("crash-loop", "seconds to converge after the burst",
            never if bad["took"] is None else bad["took"],
            never if ours["took"] is None else ours["took"],
            f"converges (< {converge_timeout:g} s)", bad["took"] is None,
            ours["took"] is not None, unit="s"),
    ]
    return result


@contextlib.contextmanager
def _one(lab: Lab, kind: str, namespace: str, ready: bool) -> Iterator[ControllerProcess]:
    role = kind
    process = (procs.bad("crash-loop", lab.target.kubeconfig(role), namespace, lab.workdir)
               if kind == "bad" else procs.ours(lab.target.kubeconfig(role), namespace,
                                                 lab.workdir))
    try:
        if ready:
            process.wait_ready()
        yield process
    finally:
        process.stop()


def crash_state(kube: Kube, namespace: str) -> dict[str, Any]:
    """What the API server shows after a crash-looping burst: Deployments duplicated (more than
    one for an AppTask), orphaned (no live AppTask), AppTasks half-applied (the status claims
    the generation, the Deployment does not show it) and whether all converged."""
    tasks = {t["metadata"]["name"]: t for t in kube.list(APPTASKS.path(namespace))["items"]}
    by_task: dict[str, list[dict[str, Any]]] = {}
    orphaned = 0
    for deployment in kube.list(DEPLOYMENTS.path(namespace))["items"]:
        meta = deployment["metadata"]
        owner = next((r["name"] for r in meta.get("ownerReferences", [])
                      if r.get("kind") == "AppTask"), None) or \
            meta.get("labels", {}).get(OWNER_LABEL)
        if owner in tasks and not meta.get("deletionTimestamp"):
            by_task.setdefault(owner, []).append(deployment)
        else:
            orphaned += 1
    duplicated = sum(len(d) - 1 for d in by_task.values() if len(d) > 1)
    half_applied = converged = 0
    for name, task in tasks.items():
        images = {d["spec"]["template"]["spec"]["containers"][0].get("image")
                  for d in by_task.get(name, [])}
        claimed = task.get("status", {}).get("observedGeneration") == \
            task["metadata"]["generation"]
        shows = images == {task["spec"]["image"]}
        half_applied += claimed and not shows
        converged += claimed and shows and len(by_task.get(name, [])) == 1
    return {"duplicated": duplicated, "orphaned": orphaned, "half_applied": half_applied,
            "converged": converged == len(tasks) and not orphaned}


SCENARIOS: dict[str, Callable[[Lab], ModeResult]] = {
    "broken": broken,
    "conflicting": conflicting,
    "retry-bomb": retry_bomb,
    "leaky": leaky,
    "no-leader": no_leader,
    "wrong-watch": wrong_watch,
    "crash-loop": crash_loop,
}
