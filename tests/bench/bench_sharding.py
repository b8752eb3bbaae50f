"""Benchmark: sharding (issue 22): N = 1..4 replicas share COUNT AppTasks, each N its own plane.

    .venv/bin/python tests/bench/bench_sharding.py --count 20000 [--replicas 1,2,3,4]
        [--rebalance 4] [--settled] [--workers 4] [--timeout 1800]

For each N, a local control plane of its own (etcd, kube-apiserver v1.20.2,
kube-controller-manager: Deployments of 0 replicas, observed but without pods), then: N
`python -m ssa_controller run` processes with sharding on (users controller, controller-2, ...
bound by manifests/rbac.yaml, so that the audit log tells them apart; write limit lifted to
1000 qps, leader election with client-go's timings), then COUNT AppTasks created at once
(8 threads), then, for the Ns given to --rebalance, one more replica joins (with --settled,
once the control plane is quiet again):
- new: seconds until every AppTask's status is current (observedGeneration; and the ratio to
  N = 1); per replica the AppTasks it holds, its peak RSS (VmHWM, MB) and CPU seconds (/proc)
  since it started; requests per AppTask from the audit log (by verb and resource), and among
  them the sharder's label patches;
- rebalance: seconds from the join until every AppTask is labelled with the shard the ring of
  N + 1 gives it, no drain pending, and its Deployment labelled alike; how many moved, and the
  requests it took per moved AppTask;
then every replica stops (SIGTERM) and the control plane is torn down: each N gets a fresh one
(deleting 2 x COUNT objects would load the next N's). The machine's busy share (percent of all
cores, /proc/stat) and the control plane's CPU seconds are printed for each phase. Not a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from bench_compare import Machine, Tracker, apptask, proc_cpu, proc_mem  # noqa: E402
from bench_figures import by_verb  # noqa: E402
from helpers import CONTROLLER_NAMESPACE, apply_rbac, rbac_objects  # noqa: E402

from ssa_controller import crds  # noqa: E402
from ssa_controller.apptask.desired import SHARD_LABEL  # noqa: E402
from ssa_controller.client.kube import Kube  # noqa: E402
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS, LEASES  # noqa: E402
from ssa_controller.envtest import ControlPlane, die_with_parent, install, poll_until  # noqa: E402
from ssa_controller.runtime.sharding.ring import Ring  # noqa: E402
from ssa_controller.sharded import DRAIN_LABEL, RING_LABEL  # noqa: E402

USERS = ("controller", "controller-2", "controller-3", "controller-4", "controller-5")
QUIET, QUIET_WINDOW = 0.2, 10.0
"""--settled: the join waits until the control plane used under 0.2 of a core over 10 s."""


class Replica:
    """One sharded `ssa-controller run` process as user `user`."""

    def __init__(self, plane: ControlPlane, workdir: Path, user: str, ns: str, ring: str,
                 workers: int) -> None:
        self.user = user
        folder = workdir / f"{ring}-{user}"
        folder.mkdir()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = {"namespaces": [ns], "workers": workers, "sharding": {"enabled": True},
                  "leaderElection": {"enabled": True, "namespace": CONTROLLER_NAMESPACE,
                                     "leaseName": ring},
                  "rateLimit": {"qps": 1000, "burst": 1000},
                  "server": {"bindAddress": "127.0.0.1", "metricsPort": port, "healthPort": 0,
                             "secureMetrics": False},
                  "logging": {"level": "warning"}}
        (folder / "controller.yaml").write_text(yaml.safe_dump(config))
        kubeconfig = plane.write_kubeconfig(user, folder / "kubeconfig")
        self.log = (folder / "controller.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssa_controller", "run", "--config",
             str(folder / "controller.yaml"), "--kubeconfig", str(kubeconfig)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "MALLOC_ARENA_MAX": "2"},
            preexec_fn=die_with_parent(os.getpid()))

    def figures(self) -> tuple[float, float]:
        """(peak RSS in MB, CPU seconds) since it started."""
        return proc_mem(self.proc.pid)[1], proc_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def labels(obj: dict[str, Any]) -> tuple[Any, ...]:
    """An AppTask's generation, observed generation, shard, drain mark and uid."""
    found = obj["metadata"].get("labels") or {}
    return (obj["metadata"].get("generation"), (obj.get("status") or {}).get("observedGeneration"),
            found.get(SHARD_LABEL), DRAIN_LABEL in found, obj["metadata"]["uid"])


def live_shards(admin: Kube, ring: str) -> set[str]:
    leases = admin.list(LEASES.path(CONTROLLER_NAMESPACE),
                        {"labelSelector": f"{RING_LABEL}={ring}"})["items"]
    return {lease["metadata"]["name"] for lease in leases
            if lease["spec"].get("holderIdentity") == lease["metadata"]["name"]}


def placed(admin: Kube, ns: str, ring: str, tasks: Tracker, deployments: Tracker,
           uids: dict[str, str]) -> bool:
    """Whether every AppTask is where the ring of the live shards puts it, none is draining,
    and each Deployment carries its AppTask's shard."""
    owner = Ring(live_shards(admin, ring))
    seen, labelled = tasks.latest(), deployments.latest()
    return all(name in seen and seen[name][2] == owner.owner(uid) and not seen[name][3]
               and labelled.get(name) == seen[name][2] for name, uid in uids.items())


def settled(plane: ControlPlane, timeout: float) -> float:
    """Waits until the control plane used less than QUIET of a core over a window of QUIET_WINDOW
    seconds; returns the seconds it waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        machine = Machine(plane)
        time.sleep(QUIET_WINDOW)  # (a measuring window, not a synchronisation)
        if machine.figures()["plane_cpu"] < QUIET * QUIET_WINDOW:
            return time.monotonic() - t0
    raise TimeoutError(f"the control plane still busy after {timeout:.0f}s")


def run(plane: ControlPlane, workdir: Path, count: int, replicas: int, workers: int,
        timeout: float, baseline: float | None, rebalance: bool, settle: bool) -> float:
    """One N: returns the seconds until every status was current (for the ratio to N = 1)."""
    admin = Kube.from_kubeconfig(str(plane.kubeconfig), user_agent="bench", max_connections=16)
    ns = ring = f"sharded-{replicas}-{count}"
    admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    tasks = Tracker(plane.kubeconfig, APPTASKS.path(ns), labels)
    deployments = Tracker(plane.kubeconfig, DEPLOYMENTS.path(ns),
                          lambda d: d["metadata"].get("labels", {}).get(SHARD_LABEL))
    started = [Replica(plane, workdir, user, ns, ring, workers) for user in USERS[:replicas]]
    try:
        poll_until(lambda: len(live_shards(admin, ring)) == replicas, timeout=60,
                   message=f"{replicas} live shards")
        time.sleep(2 * replicas)  # every replica's view of the ring synced before the burst
        names = [f"at-{i}" for i in range(count)]
        log, users = plane.audit, set(USERS[:replicas])

        mark, machine, t0 = log.mark(), Machine(plane), time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: admin.apply(APPTASKS.path(ns, n), apptask(ns, n),
                                                field_manager="bench", force=True), names))
        created = time.monotonic() - t0
        status = tasks.when_all(names, lambda s: s[0] == s[1] and s[2] is not None, t0, timeout)
        shares = machine.figures()
        time.sleep(1.0)  # the last Events
        events = [e for e in log.select(mark) if e.user in users]
        label_patches = sum(1 for e in events if e.verb == "patch" and e.resource == "apptasks"
                            and e.subresource is None)
        held = {shard: sum(1 for s in tasks.latest().values() if s[2] == shard)
                for shard in live_shards(admin, ring)}
        print(f"N={replicas} new: created {created:.1f}s, every status current {status:.1f}s"
              + (f" ({status / baseline:.2f}x N=1)" if baseline else "")
              + f", busy {shares['busy']:.0f}%, plane cpu {shares['plane_cpu']:.0f}s", flush=True)
        print(f"  requests per AppTask {by_verb(events, count)}; sharder label patches per "
              f"AppTask {label_patches / count:.2f}", flush=True)
        for replica in started:
            peak, cpu = replica.figures()
            print(f"  {replica.user}: peak RSS {peak:.0f} MB, cpu {cpu:.1f}s", flush=True)
        print(f"  AppTasks per shard: {sorted(held.values(), reverse=True)}", flush=True)
        if rebalance:
            if settle:
                waited = settled(plane, timeout)
                print(f"  the control plane settled {waited:.0f}s after every status was "
                      "current", flush=True)
            started.append(Replica(plane, workdir, USERS[replicas], ns, ring, workers))
            join(plane, admin, ns, ring, count, tasks, deployments, timeout)
    finally:
        for replica in started:
            replica.stop()
        tasks.stop()
        deployments.stop()
        admin.close()
    return status


def join(plane: ControlPlane, admin: Kube, ns: str, ring: str, count: int, tasks: Tracker,
         deployments: Tracker, timeout: float) -> None:
    """Prints the rebalance after one more replica was started: until every AppTask and its
    Deployment carry the shard the ring of the live shards gives it and none is draining."""
    seen = tasks.latest()  # (a list of COUNT AppTasks may outlast a request's timeout)
    uids = {name: s[4] for name, s in seen.items()}
    before = {name: s[2] for name, s in seen.items()}
    replicas = len(live_shards(admin, ring))
    log, mark, machine, t0 = plane.audit, plane.audit.mark(), Machine(plane), time.monotonic()
    poll_until(lambda: placed(admin, ns, ring, tasks, deployments, uids) and
               len(live_shards(admin, ring)) == replicas + 1, timeout=timeout, interval=1.0,
               message="the AppTasks rebalanced")
    took = time.monotonic() - t0
    shares = machine.figures()
    moved = sum(1 for name, s in tasks.latest().items() if s[2] != before.get(name))
    events = [e for e in log.select(mark) if e.user in USERS]
    print(f"N={replicas}->{replicas + 1} rebalance: {moved} moved ({moved / count:.0%}) in "
          f"{took:.1f}s, busy {shares['busy']:.0f}%, plane cpu {shares['plane_cpu']:.0f}s; "
          f"requests per moved AppTask {by_verb(events, max(moved, 1))}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--replicas", default="1,2,3,4", help="the Ns, comma-separated")
    parser.add_argument("--rebalance", default="4",
                        help="the Ns (comma-separated) after whose run one more replica joins")
    parser.add_argument("--settled", action="store_true",
                        help="before a replica joins, wait until the control plane is quiet")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    joins = {int(n) for n in args.rebalance.split(",") if n}
    if not all(1 <= n < len(USERS) for n in counts):
        parser.error(f"each N must be 1..{len(USERS) - 1}")
    started = datetime.now(UTC)
    print(f"{started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; {args.count} AppTasks, {args.workers} workers "
          "per replica", flush=True)
    assets = install(log=lambda _: None)
    baseline = None
    for replicas in counts:
        with tempfile.TemporaryDirectory() as tmp, \
                ControlPlane(Path(tmp), controller_manager=True,
                             users={u: () for u in USERS}, assets=assets) as plane:
            admin = plane.client(user_agent="bench")
            crds.install(admin)
            admin.create("/api/v1/namespaces", {"metadata": {"name": CONTROLLER_NAMESPACE}})
            apply_rbac(admin, rbac_objects(USERS))
            admin.close()
            status = run(plane, Path(tmp), args.count, replicas, args.workers, args.timeout,
                         baseline, replicas in joins, args.settled)
            baseline = baseline or (status if replicas == 1 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
