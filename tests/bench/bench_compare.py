"""Benchmark: ssa-controller side by side with the floor, kopf and a Go controller, in one run.

    .venv/bin/pip install -e '.[bench]'      # kopf, for the yardstick only
    .venv/bin/python tests/bench/bench_compare.py --count 1000 [--count 5000] [--large 20000]
        [--repeat 3]

One local control plane (etcd, kube-apiserver v1.20.2, kube-controller-manager, the pod
simulator). Each contender runs as its own process, one after the other, in its own namespace
(deleted, and waited for, before the next one starts), with the same number of workers (4) and
keep-alive connections:
- floor: tests/bench/floor.py, one server-side apply of desired.render's body and one status
  patch per AppTask generation, nothing else;
- controller: `python -m ssa_controller run` (write limit lifted to 1000 qps), with credentials
  as in a pod (a service-account directory and $KUBERNETES_SERVICE_HOST, no kubeconfig);
- kopf: tests/bench/kopf_operator.py under `kopf run` (Event posting off);
- go: tests/bench/goctl/, client-go informers, a rate-limited work queue, the same apply body and
  status (client limit 1000 qps), built once from Debian's kubernetes source and cached
  (goctl_build.py); skipped, with one line saying why, when it cannot be built.
Scenarios per contender and COUNT: N new AppTasks at once; a burst of spec changes to 10% of
them; a 10-replica rolling update; a cold start over the N converged AppTasks; 5 idle resync
periods of 2 s (the controller only, restarted for it: the others have no resync; elsewhere it
runs with its default period, 5 minutes); change-to-Deployment latency over
SAMPLES sequential updates; a backlog: every AppTask changed while the contender was down,
then it starts (its throughput, without the pace of the creations). --large N runs the "new"
and "cold start" scenarios only, for each contender chosen, without waiting for every AppTask to
be Ready (at 20,000 the Deployment controller needs half an hour for that). --service gives every
AppTask's spec a Service (spec.service): the floor applies it too, kopf and go do not, so only
floor, controller and baseline run with it. Every contender runs
REPEAT times per COUNT, taking turns (run 1 of each, then run 2 of each, ...); each figure is
the median of the runs [min-max] (bench_figures.py). Times are also ratios to the floor's in
the same run (the median of those); "status" is when every observedGeneration was current,
"ready" when every AppTask was Ready too (new and backlog; the floor never writes Ready).
Requests come from the audit log, CPU seconds and RSS from /proc of the contender's process;
for "new" and "backlog" also the CPU seconds of the control plane (plane_cpu) and of this
harness (harness_cpu) until every status was current, and how busy the machine's cores were
then (busy, percent, /proc/stat). Not a test.
"""

from __future__ import annotations

import argparse
import collections
import compileall
import concurrent.futures
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import goctl_build  # noqa: E402  (beside this file)
from bench_figures import Runs, by_verb, fmt, table  # noqa: E402

from ssa_controller import crds  # noqa: E402
from ssa_controller.client.credentials import SERVICE_ACCOUNT_DIR_ENV  # noqa: E402
from ssa_controller.client.kube import Kube  # noqa: E402
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS  # noqa: E402
from ssa_controller.envtest import (  # noqa: E402
    ApiError,
    ControlPlane,
    PodSimulator,
    die_with_parent,
    install,
    poll_until,
)

HERE = Path(__file__).resolve().parent
NEW_IMAGE = "nginx:1.26"
BACKLOG_IMAGE = "nginx:1.28"
ROLL = "roll"
PROBE = "probe"
TICK = os.sysconf("SC_CLK_TCK")


SERVICE = {"ports": [{"name": "http", "port": 80}]}
"""spec.service of every AppTask with --service."""
SERVICE_CONTENDERS = ("floor", "controller", "baseline")
"""The contenders that apply a Service (kopf's and the Go yardsticks' do not)."""


def apptask(ns: str, name: str, image: str = "nginx:1.25", replicas: int = 0,
            service: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": image, "replicas": replicas,
                            "env": [{"name": "N", "value": name}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
    if service:
        spec["service"] = SERVICE
    return {"apiVersion": "example.com/v1", "kind": "AppTask",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def manifest_env(root: Path) -> dict[str, str]:
    """The values the Deployment in `root`/manifests sets in its container's environment
    (fieldRef values, which only a pod has, left out)."""
    deployment = yaml.safe_load((root / "manifests" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", ()) if "value" in e}


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(values)
    return (total - values[3] - values[4]) / TICK, total / TICK  # idle and iowait are not busy


class Machine:
    """Where the CPU went while a scenario ran: the control plane's processes (etcd,
    kube-apiserver, kube-controller-manager), this harness (creating AppTasks, the pod
    simulator, its watches) and how busy the machine's cores were, in percent."""

    def __init__(self, plane: ControlPlane) -> None:
        self.pids = plane.pids()
        self.plane0 = self.plane_cpu()
        self.harness0 = proc_cpu(os.getpid())
        self.busy0, self.total0 = machine_busy()

    def plane_cpu(self) -> float:
        return sum(proc_cpu(pid) for pid in self.pids.values())

    def figures(self) -> dict[str, float]:
        busy, total = machine_busy()
        return {"plane_cpu": self.plane_cpu() - self.plane0,
                "harness_cpu": proc_cpu(os.getpid()) - self.harness0,
                "busy": 100 * (busy - self.busy0) / max(total - self.total0, 1e-9)}


def proc_mem(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


# -- trackers: the benchmark's own watches, recording when each object reached each state ------

class Tracker:
    """Watches one resource in one namespace and keeps every object's history of (time, obj
    summary)."""

    def __init__(self, kubeconfig: Path, path: str, summarize: Any) -> None:
        self.kube = Kube.from_kubeconfig(str(kubeconfig), user_agent="bench-watch")
        self.path = path
        self.summarize = summarize
        self.history: dict[str, list[tuple[float, Any]]] = collections.defaultdict(list)
        self.lock = threading.Lock()
        self.stream = None
        listed = self.kube.list(path)
        now = time.monotonic()
        for item in listed["items"]:
            self.history[item["metadata"]["name"]].append((now, summarize(item)))
        self.rv = listed["metadata"]["resourceVersion"]
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            try:
                self.stream = self.kube.watch(self.path, {"resourceVersion": self.rv,
                                                          "allowWatchBookmarks": True,
                                                          "timeoutSeconds": 3000}, timeout=3100)
                for event in self.stream:
                    obj = event["object"]
                    self.rv = obj["metadata"].get("resourceVersion", self.rv)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        summary = self.summarize(obj)
                        with self.lock:
                            hist = self.history[obj["metadata"]["name"]]
                            if not hist or hist[-1][1] != summary:
                                hist.append((time.monotonic(), summary))
            except Exception:  # noqa: BLE001
                time.sleep(0.2)

    def latest(self) -> dict[str, Any]:
        with self.lock:
            return {k: v[-1][1] for k, v in self.history.items() if v}

    def first(self, name: str, pred: Any, after: float = 0.0) -> float | None:
        with self.lock:
            for t, s in self.history.get(name, ()):
                if t >= after and pred(s):
                    return t
        return None

    def when_all(self, names: list[str], pred: Any, since: float, timeout: float) -> float:
        """Seconds from `since` until every name's latest summary satisfies pred (the time of
        the last one to get there)."""
        deadline = time.monotonic() + timeout
        while True:
            latest = self.latest()
            if all(n in latest and pred(latest[n]) for n in names):
                break
            if time.monotonic() > deadline:
                missing = [n for n in names if not (n in latest and pred(latest[n]))]
                raise TimeoutError(f"{len(missing)} not there, e.g. {missing[:3]}")
            time.sleep(0.1)
        with self.lock:
            times = []
            for n in names:
                # the last transition into the wanted state
                t = since
                for when, s in self.history[n]:
                    if pred(s) and when >= since:
                        t = when
                        break
                times.append(t)
        return max(times) - since

    def stop(self) -> None:
        self.stopping = True
        if self.stream is not None:
            self.stream.close()


def dep_summary(obj: dict) -> tuple:
    st = obj.get("status", {})
    return (obj["spec"]["template"]["spec"]["containers"][0].get("image"),
            obj["metadata"].get("generation"), st.get("observedGeneration"),
            st.get("readyReplicas", 0), st.get("updatedReplicas", 0))


def at_summary(obj: dict) -> tuple:
    st = obj.get("status") or {}
    return (obj["metadata"].get("generation"), st.get("observedGeneration"), st.get("phase"),
            st.get("readyReplicas", 0))


def current(s: tuple) -> bool:
    return s[1] == s[0]


def ready(s: tuple) -> bool:
    return s[1] == s[0] and s[2] == "Ready"


# -- contenders ------------------------------------------------------------------------------

class Contender:
    name = ""
    agents: tuple[str, ...] = ()
    resyncs = False
    tracks_ready = True  # writes Ready once the Deployment is
    lists: frozenset[str] = frozenset({"apptasks", "deployments"})
    """The resources it lists when it starts (a cold start has settled once they answered)."""

    def __init__(self, plane: ControlPlane, workdir: Path, ns: str, workers: int,
                 resync: float) -> None:
        self.plane, self.workdir, self.ns, self.workers, self.resync = \
            plane, workdir, ns, workers, resync
        self.proc: subprocess.Popen | None = None
        self.log = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.plane.kubeconfig),
                "BENCH_WORKERS": str(self.workers)}

    def start(self) -> None:
        self.log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(self.argv(), cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env(),
                                     preexec_fn=die_with_parent(os.getpid()))

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def mine(self, event: Any) -> bool:
        return event.user_agent.startswith(self.agents)


class Floor(Contender):
    name = "floor"
    agents = ("bench-floor",)
    tracks_ready = False
    lists = frozenset({"apptasks"})

    def argv(self) -> list[str]:
        return [sys.executable, str(HERE / "floor.py"), "--kubeconfig",
                str(self.plane.kubeconfig), "--namespace", self.ns, "--workers",
                str(self.workers)]


class Ours(Contender):
    name = "controller"
    agents = ("ssa-controller",)
    resyncs = True
    root = ROOT
    profile: Path | None = None

    def argv(self) -> list[str]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.metrics_port = sock.getsockname()[1]
        config = {"namespaces": [self.ns], "workers": self.workers,
                  "leaderElection": {"enabled": False},
                  "resync": {"period": self.resync, "jitter": 0},
                  "rateLimit": {"qps": 1000, "burst": 1000},
                  "server": {"bindAddress": "127.0.0.1", "metricsPort": self.metrics_port,
                             "healthPort": 0}, "logging": {"level": "warning"}}
        config_module = next(p for p in (self.root / "ssa_controller" / "settings" / "config.py",
                                         self.root / "ssa_controller" / "config.py")
                             if p.is_file())
        if "secureMetrics" in config_module.read_text():
            config["server"]["secureMetrics"] = False  # plain http for the benchmark's scrape
        path = self.workdir / "controller.yaml"
        path.write_text(yaml.safe_dump(config))
        return [sys.executable, "-m", "ssa_controller", "run", "--config", str(path)]

    def env(self) -> dict[str, str]:
        """As in a pod: the environment the Deployment manifest sets, credentials from a
        service-account directory, the API server from $KUBERNETES_SERVICE_HOST/_PORT, no
        kubeconfig (the admin's token: permissions are not what is measured)."""
        directory = self.workdir / "serviceaccount"
        directory.mkdir(exist_ok=True)
        (directory / "token").write_text(self.plane.admin_token)
        (directory / "ca.crt").write_bytes(self.plane.ca_file.read_bytes())
        env = {**super().env(), **manifest_env(self.root), "PYTHONPATH": str(self.root),
               SERVICE_ACCOUNT_DIR_ENV: str(directory), "KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": str(self.plane.port)}
        del env["KUBECONFIG"]
        return env

    def start(self) -> None:
        # Byte-compiled first, as `pip install` leaves a package in an image: a fresh checkout
        # would otherwise pay for compiling its modules inside the first scenario measured.
        compileall.compile_dir(self.root / "ssa_controller", quiet=1)
        self.log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(self.argv(), cwd=self.root, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env(),
                                     preexec_fn=die_with_parent(os.getpid()))
        self.spy = None
        if self.profile is not None:  # sampled from outside, without pausing the process
            self.spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "--gil",
                 "--format", "raw", "--rate", "100", "-o", str(self.profile), "-p",
                 str(self.proc.pid)], stdout=self.log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(os.getpid()))

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            self.spy.wait(60)
            self.spy = None
        super().stop()

    def reconciles(self) -> float:
        http = urllib3.PoolManager(retries=urllib3.Retry(connect=50, backoff_factor=0.05))
        text = http.request("GET", f"http://127.0.0.1:{self.metrics_port}/metrics").data.decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("controller_runtime_reconcile_total{"))


class Baseline(Ours):
    """The controller as committed at --baseline (a folder holding `git archive` of it)."""

    name = "baseline"
    profile = None

class Kopf(Contender):
    name = "kopf"
    agents = ("bench-kopf", "kopf")
    lists = frozenset({"apptasks"})

    def argv(self) -> list[str]:
        kopf = shutil.which("kopf", path=str(Path(sys.executable).parent)) or "kopf"
        return [kopf, "run", "--standalone", "--namespace", self.ns, "--log-format", "plain",
                "-q", str(HERE / "kopf_operator.py")]


class Go(Contender):
    """tests/bench/goctl/, built by goctl_build (the binary is set before the run)."""

    name = "go"
    agents = ("bench-goctl",)
    binary: Path | None = None

    def argv(self) -> list[str]:
        assert self.binary is not None
        return [str(self.binary), "--kubeconfig", str(self.plane.kubeconfig), "--namespace",
                self.ns, "--workers", str(self.workers)]


# -- measurements ----------------------------------------------------------------------------

class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: Runs = {}

    def admin(self, plane: ControlPlane) -> Kube:
        return Kube.from_kubeconfig(str(plane.kubeconfig), user_agent="bench",
                                    max_connections=16)

    def create_all(self, admin: Kube, ns: str, names: list[str], image: str = "nginx:1.25",
                   replicas: int = 0) -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: admin.apply(APPTASKS.path(ns, n),
                                                apptask(ns, n, image, replicas,
                                                        self.args.service),
                                                field_manager="bench", force=True), names))

    def contender(self, cls: type[Contender], plane: ControlPlane, workdir: Path, count: int,
                  scenarios: set[str], run: int, wait_ready: bool = True) -> None:
        args = self.args
        ns = f"{cls.name}-{count}-{run}"
        admin = self.admin(plane)
        admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})
        c = cls(plane, workdir, ns, args.workers, args.resync)
        deps = Tracker(plane.kubeconfig, DEPLOYMENTS.path(ns), dep_summary)
        ats = Tracker(plane.kubeconfig, APPTASKS.path(ns), at_summary)
        # the 10-replica AppTask and a probe exist before the contender starts
        self.create_all(admin, ns, [ROLL], replicas=10)
        c.start()
        ats.when_all([ROLL], ready if c.tracks_ready else current, time.monotonic(), 120)
        time.sleep(1.0)
        names = [f"at-{i}" for i in range(count)]
        log = plane.audit
        rss0, _ = proc_mem(c.proc.pid)

        def record(scenario: str, **figures: Any) -> None:
            runs = self.results.setdefault((scenario, str(count)), {})
            runs.setdefault(cls.name, []).append(figures)
            print(f"  {cls.name} {scenario} N={count}: "
                  + "  ".join(f"{k}={fmt(v, 2)}" for k, v in figures.items()), flush=True)

        # new AppTasks
        mark, cpu0, t0 = log.mark(), proc_cpu(c.proc.pid), time.monotonic()
        reconciles0 = c.reconciles() if c.resyncs else 0.0
        machine = Machine(plane)
        self.create_all(admin, ns, names)
        created = time.monotonic() - t0
        applied = deps.when_all(names, lambda s: True, t0, args.timeout)
        status = ats.when_all(names, current, t0, args.timeout)
        shares = machine.figures()
        converged = None
        if c.tracks_ready and wait_ready:
            converged = ats.when_all(names, ready, t0, args.timeout)
        events = self.quiet(log, mark, c)
        cpu = proc_cpu(c.proc.pid) - cpu0
        rss, peak = proc_mem(c.proc.pid)
        reconciles = (c.reconciles() - reconciles0) / count if c.resyncs else None
        record("new", created=created, applied=applied, status=status, ready=converged,
               requests=by_verb(events, count), reconciles=reconciles, cpu=cpu, peak=peak,
               mb_per_1000=(rss - rss0) / count * 1000, **shares)

        if "burst" in scenarios:
            burst = names[: max(1, count // 10)]
            mark, cpu0, t0 = log.mark(), proc_cpu(c.proc.pid), time.monotonic()
            self.create_all(admin, ns, burst, image=NEW_IMAGE)
            applied = deps.when_all(burst, lambda s: s[0] == NEW_IMAGE, t0, args.timeout)
            status = ats.when_all(burst, lambda s: s[0] == 2 and current(s), t0, args.timeout)
            if c.tracks_ready:
                ats.when_all(burst, ready, t0, args.timeout)
            events = self.quiet(log, mark, c)
            record("burst", applied=applied, status=status, requests=by_verb(events, len(burst)),
                   cpu=proc_cpu(c.proc.pid) - cpu0)

        if "rollout" in scenarios:
            mark, t0 = log.mark(), time.monotonic()
            admin.apply(APPTASKS.path(ns, ROLL), apptask(ns, ROLL, NEW_IMAGE, 10),
                        field_manager="bench", force=True)
            rolled = deps.when_all([ROLL], lambda s: s[0] == NEW_IMAGE and s[2] == s[1]
                                   and s[3] == 10 and s[4] == 10, t0, 120)
            if c.tracks_ready:
                ats.when_all([ROLL], lambda s: s[0] == 2 and ready(s) and s[3] == 10, t0, 120)
            time.sleep(3.0)
            writes = [e for e in log.events(mark) if c.mine(e) and e.resource == "apptasks"
                      and e.subresource == "status" and e.name == ROLL and e.is_write]
            lag = self.worst_lag(deps, ats, t0)
            timeline = sorted([(round(t - t0, 2), "dep", s[3]) for t, s in deps.history[ROLL]
                               if t >= t0] + [(round(t - t0, 2), "at", s[3], s[2])
                                              for t, s in ats.history[ROLL] if t >= t0])
            print(f"    rollout timeline: {timeline}", flush=True)
            record("rollout", rollout=rolled, status_writes=len(writes), worst_lag=lag)

        if "latency" in scenarios:
            samples = min(args.samples, count)
            lat = []

            def updated(s):
                return s[0] == "nginx:1.27"

            for name in names[-samples:]:
                t = time.monotonic()
                admin.apply(APPTASKS.path(ns, name), apptask(ns, name, "nginx:1.27"),
                            field_manager="bench", force=True)
                poll_until(lambda name=name, t=t: deps.first(name, updated, t) is not None,
                           timeout=30, interval=0.002, message=f"{name} updated")
                lat.append(deps.first(name, updated, t) - t)
            record("latency", p50=percentile(lat, 50) * 1000, p99=percentile(lat, 99) * 1000)
            # let statuses settle before the idle and cold-start scenarios
            ats.when_all(names, ready if c.tracks_ready else current, time.monotonic(), 120)
            time.sleep(2.0)

        if "idle" in scenarios and c.resyncs:  # restarted with a short resync period
            c.stop()
            c.resync = args.idle_resync
            c.start()
            poll_until(lambda: c.reconciles() >= count + 1, timeout=args.timeout, interval=0.2,
                       ignore=(urllib3.exceptions.HTTPError,), message="settled after restart")
            mark, start, cpu0 = log.mark(), c.reconciles(), proc_cpu(c.proc.pid)
            poll_until(lambda: c.reconciles() >= start + 5 * (count + 1), timeout=600,
                       interval=0.2, message="five idle resyncs")
            events = [e for e in log.events(mark) if c.mine(e) and e.verb != "watch"]
            record("idle", requests=len(events), writes=sum(e.is_write for e in events),
                   cpu=proc_cpu(c.proc.pid) - cpu0)

        if "cold" in scenarios:
            c.stop()
            c.resync = args.resync
            mark, t0 = log.mark(), time.monotonic()
            c.start()
            if c.resyncs:  # settled: every AppTask (the N and the rolling one) reconciled once
                poll_until(lambda: c.reconciles() >= count + 1, timeout=args.timeout,
                           interval=0.2, ignore=(urllib3.exceptions.HTTPError,),
                           message="every AppTask reconciled after the restart")
                settled = time.monotonic() - t0
                time.sleep(2.0)
            else:  # settled: its lists answered, then its CPU flat for 2 s (and 5 s passed)
                last, quiet_since = proc_cpu(c.proc.pid), time.monotonic()
                while (time.monotonic() - t0 < 5 or time.monotonic() - quiet_since < 2
                       or not self.listed(log, mark, c)) and time.monotonic() - t0 < args.timeout:
                    time.sleep(0.5)
                    now = proc_cpu(c.proc.pid)
                    if now - last > 0.05:
                        quiet_since = time.monotonic()
                    last = now
                settled = quiet_since - t0
            events = [e for e in log.events(mark) if c.mine(e)]
            rss, peak = proc_mem(c.proc.pid)
            record("cold", settled=settled, requests=by_verb(events, count),
                   writes=sum(e.is_write for e in events), cpu=proc_cpu(c.proc.pid), peak=peak,
                   mb_per_1000=(rss - rss0) / count * 1000)
        if "backlog" in scenarios:  # every AppTask changed while the contender was down
            c.stop()
            self.create_all(admin, ns, names, image=BACKLOG_IMAGE)
            mark, t0 = log.mark(), time.monotonic()
            machine = Machine(plane)
            c.start()
            applied = deps.when_all(names, lambda s: s[0] == BACKLOG_IMAGE, t0, args.timeout)
            status = ats.when_all(names, current, t0, args.timeout)
            shares = machine.figures()
            converged = None
            if c.tracks_ready and wait_ready:
                converged = ats.when_all(names, ready, t0, args.timeout)
            events = self.quiet(log, mark, c)
            record("backlog", applied=applied, status=status, ready=converged,
                   requests=by_verb(events, count), cpu=proc_cpu(c.proc.pid),
                   peak=proc_mem(c.proc.pid)[1], **shares)
        c.stop()
        deps.stop()
        ats.stop()
        self.delete_namespace(admin, ns)

    def delete_namespace(self, admin: Kube, ns: str) -> None:
        """Delete `ns` and wait until it is gone: the garbage collector and the namespace
        controller deleting thousands of objects would load the control plane under the next
        contender."""
        t0 = time.monotonic()
        admin.delete(f"/api/v1/namespaces/{ns}")

        def gone() -> bool:
            try:
                admin.get(f"/api/v1/namespaces/{ns}")
            except ApiError as error:
                if error.status == 404:
                    return True
                raise
            return False

        poll_until(gone, timeout=self.args.timeout, interval=1.0, message=f"{ns} deleted")
        print(f"  namespace {ns} deleted in {time.monotonic() - t0:.1f} s", flush=True)

    @staticmethod
    def listed(log: Any, mark: int, c: Contender) -> bool:
        """Whether the contender's lists (`Contender.lists`) since `mark` were answered
        (the audit log has a request once its answer is complete: a process waiting on a list
        of 20,000 uses no CPU meanwhile)."""
        return c.lists <= {e.resource for e in log.events(mark) if c.mine(e) and e.verb == "list"}

    @staticmethod
    def quiet(log: Any, mark: int, c: Contender) -> list[Any]:
        """The contender's requests since `mark`, once no new one came for 2 s (queued Events
        are posted after the statuses)."""
        seen, last, deadline = -1, time.monotonic(), time.monotonic() + 120
        while time.monotonic() < deadline:
            events = [e for e in log.events(mark) if c.mine(e) and e.verb != "watch"]
            if len(events) != seen:
                seen, last = len(events), time.monotonic()
            elif time.monotonic() - last >= 2.0:
                break
            time.sleep(0.5)
        return events

    @staticmethod
    def worst_lag(deps: Tracker, ats: Tracker, since: float) -> float:
        """How stale the AppTask's status.readyReplicas got after `since`: at each moment (10 ms
        steps), the time since the Deployment last had the value the AppTask shows; the worst."""
        dh = [(t, s[3]) for t, s in deps.history[ROLL]]
        ah = [(t, s[3]) for t, s in ats.history[ROLL]]
        end = max([t for t, _ in dh + ah if t >= since] or [since]) + 0.01
        worst, t, last_had = 0.0, since, {}
        while t <= end:
            d = ([v for tt, v in dh if tt <= t] or [None])[-1]
            a = ([v for tt, v in ah if tt <= t] or [None])[-1]
            last_had[d] = t
            worst = max(worst, t - last_had.get(a, since))
            t += 0.01
        return worst


KINDS: dict[str, type[Contender]] = {"floor": Floor, "controller": Ours, "kopf": Kopf,
                                     "baseline": Baseline, "go": Go}


def choose(names: list[str]) -> list[type[Contender]]:
    """The contenders named; go once its binary is found or built, else left out with one line
    saying why."""
    chosen = [KINDS[n] for n in names]
    if Go in chosen:
        try:
            Go.binary = goctl_build.build(log=lambda line: print(line, flush=True))
        except goctl_build.GoBuildError as error:
            print(f"go: skipped: {error}", flush=True)
            chosen.remove(Go)
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, action="append")
    parser.add_argument("--large", type=int, action="append", default=[],
                        help="this count with new and cold start only, not waiting for Ready")
    parser.add_argument("--contenders", default="floor,controller,kopf,go")
    parser.add_argument("--scenarios", default="burst,rollout,latency,idle,cold,backlog")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--resync", type=float, default=300.0,
                        help="the controller's resync period (s), its default")
    parser.add_argument("--idle-resync", type=float, default=2.0,
                        help="the controller's resync period in the idle scenario (s)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per contender and count; figures: median [min-max]")
    parser.add_argument("--baseline", help="a folder with an earlier version of the controller "
                        "(e.g. `git archive HEAD~1 | tar -x -C DIR`), run as contender 'baseline'")
    parser.add_argument("--service", action="store_true",
                        help="every AppTask's spec has a Service (spec.service); contenders "
                        f"{', '.join(SERVICE_CONTENDERS)} only")
    parser.add_argument("--profile", help="sample the controller with py-spy (collapsed "
                        "stacks to this file; the last start of the process wins)")
    args = parser.parse_args()
    counts = args.count or ([] if args.large else [1000])
    if args.baseline:
        Baseline.root = Path(args.baseline).resolve()
    if args.profile:
        Ours.profile = Path(args.profile).resolve()
    names = args.contenders.split(",")
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        parser.error(f"unknown contenders {', '.join(unknown)} (known: {', '.join(KINDS)})")
    if args.service and not set(names) <= set(SERVICE_CONTENDERS):
        parser.error(f"--service: only {', '.join(SERVICE_CONTENDERS)} apply a Service "
                     "(e.g. --contenders floor,controller)")
    chosen = choose(names)
    scenarios = set(args.scenarios.split(",")) - {""}
    run = Run(args)
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp, \
            ControlPlane(Path(tmp), controller_manager=True,
                         assets=install(log=lambda _: None)) as plane:
        admin = run.admin(plane)
        crds.install(admin)
        sim = PodSimulator(plane.url, plane.admin_token, str(plane.ca_file))
        sim.start()
        for count in counts:
            for i in range(args.repeat):  # the contenders take turns, run by run
                for cls in chosen:
                    print(f"{cls.name} N={count} run {i + 1}/{args.repeat}", flush=True)
                    run.contender(cls, plane, Path(tmp), count, scenarios, i)
        for count in args.large:
            for i in range(args.repeat):
                for cls in chosen:
                    print(f"{cls.name} N={count} (new, cold) run {i + 1}/{args.repeat}",
                          flush=True)
                    run.contender(cls, plane, Path(tmp), count, {"cold"}, i, wait_ready=False)
        sim.stop()
    print(f"\n{started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; median [min-max] of {args.repeat} run(s); "
          f"times in s (median ratio to the floor's in the same run), cpu in s, "
          f"peak RSS in MB, latency in ms")
    print(table(run.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
