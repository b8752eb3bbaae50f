"""The monitoring kit (manifests/monitoring) matches what the controller really serves, proven
with a real Prometheus (Debian's `prometheus` package) on loopback.

The controller runs on the test control plane with secure metrics and a certificate issued by a
CA (as manifests/cert-manager has it issued); Prometheus scrapes it every second over HTTPS,
verifying it as the ServiceMonitor says (its tlsConfig: the CA, the Service's name), with the
token of a user bound to manifests' metrics-reader, and evaluates the PrometheusRule's rules.
After a few reconciles, an invalid AppTask and a fight, every dashboard query must parse and
return data, every alert expression must parse, the fight and rejected-spec alerts must fire
and the no-leader alert must not. Configured the same way, Prometheus sends its token to no
endpoint it cannot verify. `promtool check rules` and
`promtool test rules` (tests/integration/prometheusrule_test.yaml) check the rules offline.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from helpers import (
    CONTROLLER_NAMESPACE,
    Rival,
    apptask,
    get_deployment,
    put_apptask,
    scoped,
    status_of,
)
from metrics_scrape import issue_certificate, metrics_reader, user_subject

from ssa_controller.client.kube import Kube
from ssa_controller.envtest import ControlPlane, PollTimeout, die_with_parent, poll_until
from ssa_controller.serving.httpserver import BackgroundHttpServer, QuietHandler
from ssa_controller.serving.servingcert import self_signed_context

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RULE_TESTS = Path(__file__).with_name("prometheusrule_test.yaml")
RULES_FILE = "ssa-controller.rules.yaml"
JOB = "ssa-controller-metrics"
GRAFANA_VALUES = {"$__rate_interval": "1m", "$job": JOB, "$instance": ".*"}
"""What Grafana substitutes for the dashboard's variables (instance: "All")."""
FAST_FIGHTS = {"threshold": 3, "window": "5s", "backoffBase": "2s", "backoffCap": "30s"}
MUST_FIRE = {"SsaControllerFightDetected", "SsaControllerRejectedSpecs"}
MUST_NOT_FIRE = {"SsaControllerNoLeader"}


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        reason = f"{name} not installed (apt-get install prometheus; .ci/setup does)"
        if os.environ.get("SSA_REQUIRE_CLUSTER"):
            pytest.fail(f"{reason} (SSA_REQUIRE_CLUSTER is set)", pytrace=False)
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_rules(folder: Path) -> Path:
    """The PrometheusRule's rule groups as a plain Prometheus rules file in `folder`."""
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    path = folder / RULES_FILE
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def service_monitor_tls(ca_file: Path) -> tuple[dict[str, Any], str]:
    """The ServiceMonitor's tlsConfig as Prometheus' tls_config (its CA Secret's ca.crt read
    from `ca_file`), and the server name it verifies."""
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    [endpoint] = monitor["spec"]["endpoints"]
    tls = endpoint["tlsConfig"]
    config: dict[str, Any] = {"insecure_skip_verify": bool(tls.get("insecureSkipVerify"))}
    if "ca" in tls:
        config["ca_file"] = str(ca_file)
    if "serverName" in tls:
        config["server_name"] = tls["serverName"]
    return config, tls.get("serverName", "localhost")


def alert_rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "dashboards" / "ssa-controller.json").read_text())


def grafana(expr: str) -> str:
    """`expr` with the dashboard's variables replaced as Grafana does before querying."""
    for variable, value in GRAFANA_VALUES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable left in {expr}"
    return expr


# --------------------------------------------------------------------------- promtool


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    done = subprocess.run([binary("promtool"), "check", "rules", str(write_rules(tmp_path))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_unit_tests_every_alert(tmp_path: Path) -> None:
    write_rules(tmp_path)
    tests = tmp_path / RULE_TESTS.name
    shutil.copy(RULE_TESTS, tests)
    tested = {case["alertname"] for group in yaml.safe_load(tests.read_text())["tests"]
              for case in group["alert_rule_test"] if case["exp_alerts"]}
    assert tested == {rule["alert"] for rule in alert_rules()}, "an alert is never seen firing"
    done = subprocess.run([binary("promtool"), "test", "rules", str(tests)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- a real Prometheus


class Prometheus:
    """A Prometheus on a free loopback port scraping one HTTPS target with a bearer token every
    second and evaluating the rules every second; killed on exit (and if this process dies)."""

    def __init__(self, workdir: Path, target_port: int, token: str, port: int,
                 tls: dict[str, Any]) -> None:
        self.workdir, self.port = workdir, port
        write_rules(workdir)
        (workdir / "token").write_text(token)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [RULES_FILE],
            "scrape_configs": [{
                "job_name": JOB, "scheme": "https", "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": "token"},
                "tls_config": tls,
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}]}))
        self.log_path = workdir / "prometheus.log"
        self._http = urllib3.PoolManager(retries=False, timeout=10.0)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary("prometheus"), "--config.file", str(self.workdir / "prometheus.yml"),
                 "--storage.tsdb.path", str(self.workdir / "data"),
                 "--web.listen-address", f"127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                preexec_fn=die_with_parent(os.getpid()))
        try:
            poll_until(self.ready, timeout=30, message="prometheus ready",
                       ignore=(urllib3.exceptions.HTTPError,))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
        return self._http.request("GET", f"{self.url}/-/ready").status == 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def api(self, path: str, **fields: str) -> Any:
        """The `data` of a Prometheus HTTP API answer; AssertionError with its error otherwise."""
        response = self._http.request("GET", f"{self.url}/api/v1/{path}", fields=fields)
        body = json.loads(response.data)
        assert body["status"] == "success", f"{path} {fields}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", expr
        return data["result"]

    def label_values(self, variable_query: str) -> list[str]:
        """Grafana's label_values(selector, label) through the label values API."""
        found = re.fullmatch(r"label_values\((.+), (\w+)\)", grafana(variable_query))
        assert found, variable_query
        return self.api(f"label/{found.group(2)}/values", **{"match[]": found.group(1)})

    def target(self) -> dict[str, Any]:
        """The one target's state ({} until Prometheus has one)."""
        targets = self.api("targets")["activeTargets"]
        assert len(targets) <= 1, targets
        return dict(targets[0]) if targets else {}

    def target_up(self) -> bool:
        return self.target().get("health") == "up"

    def alerts(self) -> dict[str, str]:
        """Every alerting rule's state (inactive, pending, firing); every rule must evaluate."""
        rules = [r for g in self.api("rules")["groups"] for r in g["rules"]]
        broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not broken, f"rules failing to evaluate: {broken}"
        return {r["name"]: r["state"] for r in rules}


def wait_for_phase(admin: Kube, namespace: str, name: str, phase: str) -> None:
    poll_until(lambda: status_of(admin, namespace, name).get("phase") == phase, timeout=60,
               message=f"AppTask {name} in phase {phase}")


def drive(admin: Kube, namespace: str) -> None:
    """A few reconciles, an invalid AppTask and a fight."""
    for i in range(3):
        put_apptask(admin, apptask(f"web-{i}", namespace, replicas=1))
    put_apptask(admin, apptask("invalid", namespace, labels={"apptasks.example.com/name": "x"}))
    for name, phase in [("web-0", "Ready"), ("web-1", "Ready"), ("web-2", "Ready"),
                        ("invalid", "Invalid")]:
        wait_for_phase(admin, namespace, name, phase)
    put_apptask(admin, apptask("fought", namespace, replicas=2))
    poll_until(lambda: get_deployment(admin, namespace, "fought"), timeout=30,
               message="fought created")
    with Rival(admin, namespace, "fought"):
        wait_for_phase(admin, namespace, "fought", "Conflict")


class Impostor:
    """An HTTPS endpoint that is not the controller (a pod that became an endpoint of the
    metrics Service, or something on the path): a self-signed certificate, and it records the
    Authorization header of every request it gets."""

    def __init__(self) -> None:
        self.received: list[str | None] = []
        received = self.received

        class Record(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                received.append(self.headers.get("Authorization"))
                self.reply(200, b"up 1\n", "text/plain; version=0.0.4")

        self.server = BackgroundHttpServer("127.0.0.1", 0, Record, "impostor",
                                           self_signed_context())

    def __enter__(self) -> Impostor:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def test_prometheus_sends_its_token_to_no_endpoint_it_cannot_verify(tmp_path: Path) -> None:
    """Issue 26.4: the ServiceMonitor skipped verification, so whatever answered on the metrics
    Service's endpoints received Prometheus' token, one the API server accepts."""
    tls, server_name = service_monitor_tls(tmp_path / "cert" / "ca.crt")
    issue_certificate(tmp_path / "cert", server_name)
    with Impostor() as impostor, Prometheus(tmp_path, impostor.server.port, "prometheus-token",
                                            free_port(), tls) as prometheus:
        target = poll_until(lambda: (t := prometheus.target()).get("health") == "down" and t,
                            timeout=30, message="the impostor's target down")
        assert "x509" in target["lastError"] or "certificate" in target["lastError"], target
        assert impostor.received == []


def test_dashboard_and_alerts_match_a_real_scrape(admin: Kube, controller, namespace: str,
                                                  cluster: ControlPlane, lease_name: str,
                                                  tmp_path: Path) -> None:
    tls, server_name = service_monitor_tls(tmp_path / "cert" / "ca.crt")
    issue_certificate(tmp_path / "cert", server_name)
    config = {**scoped(namespace, fights=FAST_FIGHTS,
                       leaderElection={"enabled": True, "namespace": CONTROLLER_NAMESPACE,
                                       "leaseName": lease_name}),
              "server": {"secureMetrics": True, "metricsCertDir": str(tmp_path / "cert")}}
    with metrics_reader(admin, user_subject("alice")):
        process = controller(config)
        prometheus = Prometheus(tmp_path, process.metrics_port, cluster.token("alice"),
                                free_port(), tls)
        with prometheus:
            try:
                check_against_prometheus(admin, namespace, prometheus)
            except BaseException:
                print(f"--- prometheus log ---\n{prometheus.log()}")
                raise


SHARDING_ROW = "Sharding (sharding.enabled)"
"""The dashboard's row of a sharded controller's panels."""


def panels(sharding: bool = False) -> list[dict[str, Any]]:
    """The dashboard's panels with queries: those below the sharding row, or the others."""
    found, below = [], False
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            below = panel["title"] == SHARDING_ROW
        elif below == sharding:
            found.append(panel)
    return found


def panels_without_data(prometheus: Prometheus, sharding: bool = False) -> list[str]:
    """Every dashboard query parses (AssertionError otherwise); the ones returning no number."""
    empty = []
    for panel in panels(sharding):
        for target in panel["targets"]:
            result = prometheus.query(grafana(target["expr"]))
            if not any(math.isfinite(float(r["value"][1])) for r in result):
                empty.append(f"{panel['title']} / {target['legendFormat']}: {result}")
    return empty


def check_against_prometheus(admin: Kube, namespace: str, prometheus: Prometheus) -> None:
    poll_until(prometheus.target_up, timeout=30, message="the HTTPS target up in Prometheus")
    drive(admin, namespace)
    poll_until(lambda: prometheus.query(f'ssa_controller_fights_detected_total{{job="{JOB}"}} > 0'),
               timeout=15, message="Prometheus scraped the fight")

    variables = [v for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    for variable in variables:
        assert prometheus.label_values(variable["query"]["query"]), variable["name"]
    assert JOB in prometheus.label_values("label_values(ssa_controller_applies_total, job)")

    # rate() needs two scrapes of a series; the reconciles may all fall between two scrapes
    with contextlib.suppress(PollTimeout):
        poll_until(lambda: not panels_without_data(prometheus), timeout=15)
    empty = panels_without_data(prometheus)
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    for rule in alert_rules():
        prometheus.query(rule["expr"])  # parses, or AssertionError
    states = poll_until(
        lambda: (s := prometheus.alerts()) and all(s[a] == "firing" for a in MUST_FIRE) and s,
        timeout=15, message=f"{sorted(MUST_FIRE)} firing")
    assert all(states[a] == "inactive" for a in MUST_NOT_FIRE), states


def test_the_sharding_row_matches_a_real_scrape_of_a_sharded_controller(
        admin: Kube, controller, namespace: str, cluster: ControlPlane, lease_name: str,
        tmp_path: Path) -> None:
    """A sharded controller assigns AppTasks, a second shard joins and some are drained to it:
    every query of the dashboard's sharding row returns data from the first one's /metrics."""
    tls, server_name = service_monitor_tls(tmp_path / "cert" / "ca.crt")
    issue_certificate(tmp_path / "cert", server_name)
    config = {**scoped(namespace, sharding={"enabled": True},
                       leaderElection={"enabled": True, "namespace": CONTROLLER_NAMESPACE,
                                       "leaseName": lease_name}),
              "server": {"secureMetrics": True, "metricsCertDir": str(tmp_path / "cert")}}
    shard = "apptasks.example.com/shard"
    try:
        with metrics_reader(admin, user_subject("alice")):
            first = controller(config)
            with Prometheus(tmp_path, first.metrics_port, cluster.token("alice"), free_port(),
                            tls) as prometheus:
                poll_until(prometheus.target_up, timeout=30, message="the target up")
                for i in range(16):
                    put_apptask(admin, apptask(f"web-{i}", namespace))

                def shards() -> list[str | None]:
                    return [(t["metadata"].get("labels") or {}).get(shard) for t in admin.list(
                        f"/apis/example.com/v1/namespaces/{namespace}/apptasks")["items"]]
                poll_until(lambda: None not in shards(), timeout=30,
                           message="AppTasks on the first shard")
                controller(config, user="controller-2")  # some are drained to it
                poll_until(lambda: len(set(shards())) == 2, timeout=60,
                           message="AppTasks on both shards")
                with contextlib.suppress(PollTimeout):
                    poll_until(lambda: not panels_without_data(prometheus, sharding=True),
                               timeout=30)
                empty = panels_without_data(prometheus, sharding=True)
                assert not empty, "sharding queries without data:\n" + "\n".join(empty)
    finally:
        for lease in admin.list(f"/apis/coordination.k8s.io/v1/namespaces/"
                                f"{CONTROLLER_NAMESPACE}/leases",
                                {"labelSelector": f"apptasks.example.com/ring={lease_name}"}
                                )["items"]:
            admin.delete(f"/apis/coordination.k8s.io/v1/namespaces/{CONTROLLER_NAMESPACE}/"
                         f"leases/{lease['metadata']['name']}")
