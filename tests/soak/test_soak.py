"""Soak (issue 9, item 6): an hour of production compressed into a few minutes of churn.

A controller process (resync every second, default limits) watches one namespace of its own
control plane while a driver creates, updates and deletes AppTasks around a steady population
(garbage collection by kube-controller-manager removes the deleted ones' Deployments), and
kube-apiserver is restarted once half-way. Every SAMPLE_EVERY seconds the controller's RSS,
threads and open file descriptors are read from /proc/<pid>, and its cache sizes from its
metrics. After the warm-up each of them must be flat: the least-squares slope over the samples
is printed and bounded. At the end everything converges and the caches equal the server's state.

Marked `soak` and left out of the default run (OPT_IN_MARKERS in tests/conftest.py):

    .venv/bin/python -m pytest -q -m soak tests/soak          # as .ci/run does
    SSA_SOAK_SECONDS=600 .venv/bin/python -m pytest -q -m soak tests/soak -s   # longer

(SSA_SOAK_SAMPLES=FILE keeps the samples as CSV: seconds, RSS KiB, threads, fds, cached
AppTasks, cached Deployments.)
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from ssa_controller import crds
from ssa_controller.client.kube import Kube
from ssa_controller.client.resources import APPTASKS, DEPLOYMENTS
from ssa_controller.client.wire import ApiError
from ssa_controller.envtest import Assets, ControlPlane, die_with_parent, poll_until

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "soak"
DURATION = float(os.environ.get("SSA_SOAK_SECONDS", "150"))
"""Seconds of churn."""
WARMUP = 0.3 * DURATION
RESTART_AT = 0.5 * DURATION
SAMPLE_EVERY = 2.0
TICK = 0.5
"""Seconds between two churn steps."""
POPULATION = 40
"""The number of AppTasks the churn keeps around."""

# Bounds on the slopes after warm-up, per minute. An hour of production is about 25 times this
# run's churn, so an RSS slope at the bound would add ~50 MiB in an hour of this compressed churn.
RSS_SLOPE_KIB = 2048.0
THREADS_SLOPE = 0.5
FDS_SLOPE = 1.0
CACHE_SLOPE = 6.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, assets: Assets) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("soak"), controller_manager=True,
                      assets=assets) as control_plane:
        admin = control_plane.client()
        try:
            crds.install(admin)
            admin.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        finally:
            admin.close()
        yield control_plane


class Controller:
    """`ssa-controller run` as a separate process, as the admin, scoped to NAMESPACE."""

    def __init__(self, plane: ControlPlane, workdir: Path) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        config = {
            "namespaces": [NAMESPACE],
            "resync": {"period": "1s", "jitter": 0.1},
            "leaderElection": {"enabled": False},
            "server": {"bindAddress": "127.0.0.1", "metricsPort": self.metrics_port,
                       "healthPort": self.health_port, "secureMetrics": False},
        }
        config_path = workdir / "controller.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "controller.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssa_controller", "run", "--config", str(config_path),
             "--kubeconfig", str(plane.kubeconfig)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent(os.getpid()))
        self._http = urllib3.PoolManager(retries=False, timeout=5.0)

    def _get(self, port: int, path: str) -> tuple[int, str]:
        response = self._http.request("GET", f"http://127.0.0.1:{port}{path}")
        return response.status, response.data.decode()

    def metric(self, prefix: str) -> float:
        text = self._get(self.metrics_port, "/metrics")[1]
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith(prefix))

    def cached(self, resource: str) -> int:
        return int(self.metric(f'ssa_controller_cached_objects{{resource="{resource}"}}'))

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited with {self.proc.returncode}")
            return self._get(self.health_port, "/readyz")[0] == 200
        poll_until(ready, timeout=60, message="controller /readyz",
                   ignore=(urllib3.exceptions.HTTPError,))

    def usage(self) -> tuple[int, int, int]:
        """(RSS in KiB, threads, open file descriptors), from /proc."""
        pid = self.proc.pid
        fields = dict(line.split(":", 1)
                      for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        return (int(fields["VmRSS"].split()[0]), int(fields["Threads"]),
                len(os.listdir(f"/proc/{pid}/fd")))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._http.clear()
        return self.proc.returncode


@dataclass(frozen=True)
class Sample:
    t: float
    rss: int
    threads: int
    fds: int
    apptasks: int
    deployments: int


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 60.0 * sum((t - mean_t) * (y - mean_y) for t, y in points) / spread


def test_slope_of_a_line_is_its_rate_per_minute() -> None:
    assert slope_per_minute([(0.0, 5.0), (30.0, 6.0), (60.0, 7.0)]) == pytest.approx(2.0)
    assert slope_per_minute([(0.0, 1.0), (1.0, 3.0), (2.0, 1.0), (3.0, 3.0)]) == pytest.approx(
        24.0)


def spec(rng: random.Random, version: int) -> dict[str, Any]:
    return {"image": f"nginx:1.{version % 30}", "replicas": 0,
            "env": [{"name": "VERSION", "value": str(version)},
                    {"name": "PAD", "value": "x" * rng.randrange(0, 200)}]}


class Churn:
    """Creates, updates and deletes AppTasks around POPULATION; tolerates an absent server."""

    def __init__(self, kube: Kube, seed: int = 9) -> None:
        self.kube = kube
        self.rng = random.Random(seed)
        self.live: dict[str, dict[str, Any]] = {}
        """name -> the spec last written."""
        self.serial = 0
        self.counts = {"create": 0, "update": 0, "delete": 0, "failed": 0}

    def step(self) -> None:
        rng = self.rng
        ops = ["update"] * 3
        ops += ["create"] * (3 if len(self.live) < POPULATION else 1)
        ops += ["delete"] * (3 if len(self.live) > POPULATION else 1)
        for op in rng.sample(ops, 3):
            try:
                getattr(self, op)()
                self.counts[op] += 1
            except (ApiError, urllib3.exceptions.HTTPError, OSError):
                self.counts["failed"] += 1  # the server restarts: try again next step

    def _write(self, name: str, body_spec: dict[str, Any]) -> None:
        body = {"apiVersion": "example.com/v1", "kind": "AppTask",
                "metadata": {"name": name, "namespace": NAMESPACE}, "spec": body_spec}
        self.kube.apply(APPTASKS.path(NAMESPACE, name), body, field_manager="soak", force=True)
        self.live[name] = body_spec

    def create(self) -> None:
        self.serial += 1
        self._write(f"task-{self.serial}", spec(self.rng, self.serial))

    def update(self) -> None:
        if self.live:
            name = self.rng.choice(sorted(self.live))
            self.serial += 1
            self._write(name, spec(self.rng, self.serial))

    def delete(self) -> None:
        if self.live:
            name = self.rng.choice(sorted(self.live))
            try:
                self.kube.delete(APPTASKS.path(NAMESPACE, name))
            except ApiError as exc:
                if exc.status != 404:
                    raise
            del self.live[name]


def converged(kube: Kube, churn: Churn) -> bool:
    tasks = kube.list(APPTASKS.path(NAMESPACE)).get("items", [])
    if {t["metadata"]["name"] for t in tasks} != set(churn.live):
        return False
    if not all(t.get("status", {}).get("phase") == "Ready"
               and t["status"].get("observedGeneration") == t["metadata"]["generation"]
               for t in tasks):
        return False
    images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in kube.list(DEPLOYMENTS.path(NAMESPACE)).get("items", [])}
    return images == {name: s["image"] for name, s in churn.live.items()}


def test_churn_with_an_apiserver_restart_leaks_nothing(plane: ControlPlane, tmp_path: Path
                                                       ) -> None:
    controller = Controller(plane, tmp_path)
    kube = plane.client(user_agent="soak-churn")
    samples: list[Sample] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(SAMPLE_EVERY):
            try:
                rss, threads, fds = controller.usage()
                samples.append(Sample(time.monotonic() - started, rss, threads, fds,
                                      controller.cached("apptasks"),
                                      controller.cached("deployments")))
            except (OSError, urllib3.exceptions.HTTPError, ValueError):
                pass

    sampler = threading.Thread(target=sample, name="soak-sampler", daemon=True)
    try:
        controller.wait_ready()
        churn = Churn(kube)
        for _ in range(POPULATION):  # the steady population first: the churn keeps it
            churn.create()
        poll_until(lambda: converged(kube, churn), timeout=90, interval=0.5,
                   message=f"{POPULATION} AppTasks converged")
        started = time.monotonic()
        sampler.start()
        restarted = False
        while (elapsed := time.monotonic() - started) < DURATION:
            if not restarted and elapsed >= RESTART_AT:
                plane.restart_apiserver()
                restarted = True
                print(f"kube-apiserver restarted at {elapsed:.0f}s")
            churn.step()
            time.sleep(TICK)
        churn_seconds = time.monotonic() - started
        poll_until(lambda: converged(kube, churn), timeout=90, interval=0.5,
                   message="everything converged after the churn",
                   ignore=(ApiError, urllib3.exceptions.HTTPError))
        poll_until(lambda: controller.cached("apptasks") == len(churn.live)
                   and controller.cached("deployments") == len(churn.live), timeout=30,
                   message="caches equal to the server's state")
        stop.set()
        sampler.join(10)

        samples_file = Path(os.environ.get("SSA_SOAK_SAMPLES", tmp_path / "samples.csv"))
        samples_file.write_text("".join(
            f"{s.t:.1f},{s.rss},{s.threads},{s.fds},{s.apptasks},{s.deployments}\n"
            for s in samples))
        steady = [s for s in samples if s.t >= WARMUP]
        assert len(steady) >= 20, f"only {len(steady)} samples after the warm-up"
        slopes = {
            "RSS (KiB)": (slope_per_minute([(s.t, s.rss) for s in steady]), RSS_SLOPE_KIB),
            "threads": (slope_per_minute([(s.t, s.threads) for s in steady]), THREADS_SLOPE),
            "open fds": (slope_per_minute([(s.t, s.fds) for s in steady]), FDS_SLOPE),
            "cached AppTasks": (slope_per_minute([(s.t, s.apptasks) for s in steady]),
                                CACHE_SLOPE),
            "cached Deployments": (slope_per_minute([(s.t, s.deployments) for s in steady]),
                                   CACHE_SLOPE),
        }
        first, last = steady[0], steady[-1]
        print(f"\nsoak: {churn_seconds:.0f}s of churn {churn.counts}, {len(samples)} samples "
              f"(t,rss,threads,fds,apptasks,deployments: {samples_file}), "
              f"warm-up {WARMUP:.0f}s, kube-apiserver restarted at {RESTART_AT:.0f}s")
        print(f"{'figure':<20} {'after warm-up':>16} {'end':>8} {'slope/min':>10} {'bound':>8}")
        ends = {"RSS (KiB)": (first.rss, last.rss), "threads": (first.threads, last.threads),
                "open fds": (first.fds, last.fds),
                "cached AppTasks": (first.apptasks, last.apptasks),
                "cached Deployments": (first.deployments, last.deployments)}
        for name, (value, bound) in slopes.items():
            print(f"{name:<20} {ends[name][0]:>16} {ends[name][1]:>8} {value:>10.2f} "
                  f"{bound:>8.1f}")
        too_steep = {name: round(value, 2) for name, (value, bound) in slopes.items()
                     if abs(value) > bound}
        assert too_steep == {}, f"not flat after warm-up: {too_steep}"
        assert max(s.threads for s in steady) - min(s.threads for s in steady) <= 3
    except BaseException:
        print(f"--- controller log ---\n"
              f"{controller.log_path.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        stop.set()
        controller.stop()
        kube.close()
