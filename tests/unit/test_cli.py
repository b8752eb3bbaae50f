"""The command line without a cluster: bad configuration is refused before anything starts.

Every configuration error (a wrong type for any key, a negative or zero duration, an unknown key,
invalid YAML, an empty, missing or unreadable file) ends the process with exit code 2 and exactly
one stderr line naming the file, the key or line:column, and the problem; never a traceback.
The table goes through cli.main in this process (fast); one case of each kind also goes through
the real entry point, `python -m ssa_controller run --config F`, in a subprocess."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssa_controller import cli
from ssa_controller.apptask.diff import Action, Plan
from ssa_controller.apptask.outcomes import Outcome
from ssa_controller.cli import diff_exit_code, diff_plans
from ssa_controller.client.wire import ApiError
from ssa_controller.reconciler import Result
from ssa_controller.settings.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ssa_controller", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("content", "key"), [
    ("workers: 0\n", "workers"),
    ("backoff:\n  base: 1s\n  cap: 100ms\n", "backoff.cap"),
    ("resync:\n  perod: 5m\n", "resync.perod"),
    ("apply:\n  force: 'yes'\n", "apply.force"),
])
def test_an_invalid_config_exits_2_naming_the_key(tmp_path: Path, content: str, key: str) -> None:
    config = tmp_path / "controller.yaml"
    config.write_text(content)
    result = run("run", "--config", str(config), "--kubeconfig", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert f"'{key}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_shipped_config_is_valid_and_a_missing_cluster_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ssa_controller", "run", "--config", "config/controller.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "no kubeconfig or in-cluster config found" in result.stderr


@pytest.mark.parametrize(("actions", "code"), [
    (["unchanged", "unchanged"], 0),
    (["unchanged", "configured"], 1),
    (["created"], 1),
    (["conflict"], 1),
    (["invalid", "unchanged"], 1),
    (["configured", "error"], 2),
    (["skipped", "unchanged"], 0),
    (["paused:unchanged", "skipped"], 0),
    (["paused:configured", "unchanged"], 1),
    (["paused:conflict"], 1),
    (["paused:error", "configured"], 2),
    (["unchanged", "deleted"], 1),
    ([], 0),
])
def test_diff_exit_codes_follow_kubectl_diff(actions: list[str], code: int) -> None:
    """1 when a Deployment differs from its spec: for a paused AppTask, once unpaused."""
    plans = []
    for i, action in enumerate(actions):
        paused, _, unpaused = action.rpartition(":")
        plan = Plan(f"ns/{i}", Action(unpaused))
        plans.append(plan.paused() if paused else plan)
    assert diff_exit_code(plans) == code


def test_every_apptask_of_a_diff_gets_a_plan_a_crashed_reconcile_an_error() -> None:
    planned = Plan("ns/a", Action.CONFIGURED, [{"op": "replace", "path": "/spec/replicas",
                                                "value": 2}])
    crashed = Result(Outcome.ERROR, error=ApiError(0, "KeyError", "'spec'"))
    assert diff_plans({"ns/a": Result(Outcome.DRY_RUN, plan=planned), "ns/b": crashed}) == [
        planned, Plan("ns/b", Action.ERROR, detail="0 KeyError: 'spec'")]


def test_a_diff_shows_the_services_plan_after_its_apptasks() -> None:
    planned = Plan("ns/a", Action.UNCHANGED)
    service = Plan("ns/a (Service)", Action.DELETED, detail="spec.service was removed")
    assert diff_plans({"ns/a": Result(Outcome.DRY_RUN, plan=planned, service_plan=service),
                       "ns/b": Result(plan=Plan("ns/b", Action.UNCHANGED))}) == [
        planned, service, Plan("ns/b", Action.UNCHANGED)]


# --------------------------------------------------------------------------- configuration errors

DURATIONS = ("resync.period", "backoff.base", "backoff.cap", "timeouts.request", "timeouts.watch",
             "fights.window", "fights.backoffBase", "fights.backoffCap",
             "leaderElection.leaseDuration", "leaderElection.renewDeadline",
             "leaderElection.retryPeriod", "shutdownGracePeriod")
ZERO_ALLOWED = {"shutdownGracePeriod"}  # 0: no grace period


def _leaves(tree: dict[str, object], prefix: str = "") -> list[str]:
    keys = []
    for name, value in tree.items():
        key = f"{prefix}{name}"
        keys += _leaves(value, key + ".") if isinstance(value, dict) else [key]
    return keys


LEAVES = _leaves(Config().to_dict())
SECTIONS = [k for k, v in Config().to_dict().items() if isinstance(v, dict)]


def _yaml_for(key: str, value: str) -> str:
    """A config document setting dotted `key` to the YAML text `value`; the key is on the last
    line, indented two spaces per level."""
    *parents, leaf = key.split(".")
    lines = [f"{'  ' * depth}{name}:" for depth, name in enumerate(parents)]
    leaf_line = f"{'  ' * len(parents)}{leaf}: {value}"
    return "# the key under test:\n" + "\n".join([*lines, leaf_line]) + "\n"


def _last_line(key: str) -> tuple[int, int]:
    depth = key.count(".")
    return key.count(".") + 2, 2 * depth + 1


def run_main(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[str]]:
    code = cli.main(["run", "--config", str(path), "--kubeconfig", str(path.parent / "absent")])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err.splitlines()


def assert_one_line(code: int, lines: list[str], path: Path, *fragments: str) -> str:
    assert code == 2
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"ssa-controller: {path}"), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert "Traceback" not in line
    return line


@pytest.mark.parametrize("key", LEAVES)
def test_every_key_with_a_wrong_type_is_one_line_naming_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(_yaml_for(key, "{oops: 1}"))  # a mapping is the wrong type for every leaf
    line, column = _last_line(key)
    assert_one_line(*run_main(capsys, path), path, f"{path}:{line}:{column}: ",
                    f"invalid config key '{key}': must be", "got mapping")


@pytest.mark.parametrize("key", SECTIONS)
@pytest.mark.parametrize("value", ["5", "[1]", "'text'", "true"])
def test_every_section_with_a_scalar_or_list_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(_yaml_for(key, value))
    assert_one_line(*run_main(capsys, path), path, f"{path}:2:1: ",
                    f"invalid config key '{key}': must be a mapping")


@pytest.mark.parametrize("key", DURATIONS)
@pytest.mark.parametrize("value", ["-1s", "-5", "0", "0s", "-0.5ms"])
def test_negative_and_zero_durations_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(_yaml_for(key, value))
    code, lines = run_main(capsys, path)
    if key in ZERO_ALLOWED and value in ("0", "0s"):
        # accepted: the process goes on to look for credentials (none here)
        assert code == 2 and len(lines) == 1 and "kubeconfig" in lines[0], lines
        return
    line, column = _last_line(key)
    text = assert_one_line(code, lines, path, f"{path}:{line}:{column}: ",
                           f"invalid config key '{key}': must be >")
    assert "got " in text


@pytest.mark.parametrize("key", ["workerz", "backoff.caps", "server.port",
                                 "leaderElection.lease_duration", "logging.levl", "apply.forse",
                                 "events.qps.x"])
def test_unknown_keys_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(_yaml_for(key, "1"))
    code, lines = run_main(capsys, path)
    if key == "events.qps.x":  # qps holds a mapping: a wrong type, found before anything unknown
        assert_one_line(code, lines, path, f"{path}:3:3: ", "invalid config key 'events.qps'")
        return
    line, column = _last_line(key)
    assert_one_line(code, lines, path, f"{path}:{line}:{column}: ",
                    f"invalid config key '{key}': unknown key", "allowed keys:")


@pytest.mark.parametrize(("content", "where", "fragment"), [
    ("workers: [1, 2\n", ":2:1: ", "invalid YAML: while parsing a flow sequence"),
    ("workers: 2\n  backoff: 1\n", ":2:10: ", "invalid YAML: mapping values are not allowed here"),
    ("backoff:\n  cap: 1m\n base: 1s\n", ":3:2: ", "invalid YAML:"),
    ("workers: 'unterminated\n", ":2:1: ", "invalid YAML: while scanning a quoted scalar"),
    ("workers: 2\n\tfoo: 1\n", ":2:1: ", "invalid YAML:"),
    ("workers: 2\nworkers: 3\n", ":2:1: ", "invalid YAML: found duplicate key 'workers'"),
    ("workers: *nowhere\n", ":1:10: ", "invalid YAML: found undefined alias 'nowhere'"),
    ("fieldManager: a\x07b\n", ":1:16: ", "invalid YAML: character #x07 is not allowed"),
    ("- workers: 2\n", ":1:1: ", "the top-level document must be a mapping, got list"),
    ("just text\n", ":1:1: ", "the top-level document must be a mapping, got string"),
])
def test_invalid_yaml_is_one_line_with_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, where: str, fragment: str
) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(content)
    assert_one_line(*run_main(capsys, path), path, f"{path}{where}", fragment)


@pytest.mark.parametrize(("setup", "fragment"), [
    ("empty", "the file holds no YAML document"),
    ("comments", "the file holds no YAML document"),
    ("missing", "cannot read config file: No such file or directory"),
    ("directory", "cannot read config file: Is a directory"),
    ("unreadable", "cannot read config file: Permission denied"),
    ("latin1", "config file is not UTF-8 (byte 17 is 0xe9)"),
])
def test_empty_missing_and_unreadable_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, fragment: str
) -> None:
    path = tmp_path / "controller.yaml"
    if setup == "empty":
        path.write_text("")
    elif setup == "comments":
        path.write_text("# workers: 2\n\n")
    elif setup == "directory":
        path.mkdir()
    elif setup == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.write_text("workers: 2\n")
        path.chmod(0)
    elif setup == "latin1":
        path.write_bytes(b"fieldManager: caf\xe9\n")
    assert_one_line(*run_main(capsys, path), path, f"{path}: invalid config: {fragment}")


@pytest.mark.parametrize(("content", "fragment"), [
    (None, ": invalid config: cannot read config file: No such file or directory"),
    ("", ": invalid config: the file holds no YAML document"),
    ("workers: [1, 2\n", ":2:1: invalid config: invalid YAML:"),
    ("backoff:\n  base: -1s\n", ":2:3: invalid config key 'backoff.base': must be > 0s, got -1s"),
    ("apply:\n  force: 'yes'\n", ":2:3: invalid config key 'apply.force': must be a boolean"),
    ("resync:\n  perod: 5m\n", ":2:3: invalid config key 'resync.perod': unknown key"),
])
def test_the_real_entry_point_prints_one_line_and_exits_2(
    tmp_path: Path, content: str | None, fragment: str
) -> None:
    path = tmp_path / "controller.yaml"
    if content is not None:
        path.write_text(content)
    result = run("run", "--config", str(path), "--kubeconfig", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"ssa-controller: {path}{fragment}"), result.stderr


# --------------------------------------------------------------------------- the command line


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_help_describes_the_program_and_every_option_has_help_text() -> None:
    parser = cli._parser()
    assert "AppTask" in (parser.description or "")
    assert "The command line" not in (parser.description or "")
    for name, command in {"": parser, **subcommands(parser)}.items():
        assert command.description or name == "", f"{name}: no description"
        for action in command._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name} {action.option_strings or action.dest}: no help"


def test_version_says_the_release_the_revision_and_python() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    revision = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    python = ".".join(map(str, sys.version_info[:3]))
    assert result.stdout == (f"ssa-controller {importlib.metadata.version('ssa-controller')} "
                             f"(revision {revision}, python {python})\n")


def parse(*argv: str) -> Config:
    """The configuration `run` would use, from the command line."""
    return cli.run_config(cli._parser().parse_args(["run", *argv]))


def test_controller_runtime_flags_override_the_file_which_overrides_the_defaults(
        tmp_path: Path) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text("server:\n  bindAddress: 10.0.0.1\n  metricsPort: 1111\n  healthPort: 2222\n"
                    "leaderElection:\n  enabled: false\n")
    assert parse().server.metrics_port == 8080 and parse().leader_election.enabled
    from_file = parse("--config", str(path))
    assert (from_file.server.metrics_listen, from_file.server.metrics_port) == ("10.0.0.1", 1111)
    assert (from_file.server.health_listen, from_file.server.health_port) == ("10.0.0.1", 2222)
    assert not from_file.leader_election.enabled
    flagged = parse("--config", str(path), "--metrics-bind-address", "127.0.0.1:9090",
                    "--health-probe-bind-address", ":9091", "--leader-elect")
    assert (flagged.server.metrics_listen, flagged.server.metrics_port) == ("127.0.0.1", 9090)
    assert (flagged.server.health_listen, flagged.server.health_port) == ("0.0.0.0", 9091)
    assert flagged.leader_election.enabled
    assert flagged.server.bind_address == "10.0.0.1"  # the file's, for nothing now
    assert not parse("--leader-elect=false").leader_election.enabled
    assert parse("--leader-elect=true").leader_election.enabled
    assert parse("--metrics-bind-address", "0").server.metrics_port == 0  # disabled
    assert parse("--health-probe-bind-address", "0").server.health_port == 0
    assert parse("--metrics-bind-address", "[::1]:8443").server.metrics_listen == "::1"


@pytest.mark.parametrize(("flag", "value", "fragment"), [
    ("--metrics-bind-address", "8080", "must be host:port"),
    ("--metrics-bind-address", "localhost:http", "must be host:port"),
    ("--health-probe-bind-address", "127.0.0.1:65536", "port 0..65535"),
    ("--leader-elect", "maybe", "must be true or false"),
])
def test_a_bad_flag_value_is_a_usage_error(flag: str, value: str, fragment: str) -> None:
    result = run("run", f"{flag}={value}", "--kubeconfig", "/absent")
    assert result.returncode == 2
    assert f"argument {flag}: " in result.stderr and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_local_takes_no_kubeconfig(tmp_path: Path) -> None:
    result = run("run", "--local", "--kubeconfig", str(tmp_path / "kubeconfig"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "ssa-controller: --local runs on a control plane of its own: it takes no --kubeconfig "
        "or --context"], result.stderr


@pytest.mark.parametrize(("server", "key"), [("metrics", "server.metricsPort"),
                                             ("health", "server.healthPort")])
def test_an_address_in_use_names_the_address_the_port_and_the_key(
        tmp_path: Path, server: str, key: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"  # no request is sent before the servers listen
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"metricsPort": 0, "healthPort": 0, f"{server}Port": port}
        config = tmp_path / "controller.yaml"
        config.write_text(yaml.safe_dump({"server": {"bindAddress": "127.0.0.1",
                                                     "secureMetrics": False, **ports}}))
        result = run("run", "--config", str(config), "--kubeconfig", str(kubeconfig))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"ssa-controller: cannot listen on 127.0.0.1:{port} ({key}): address already in use")


def test_a_one_pass_run_sees_every_apptask_even_with_sharding_on(tmp_path: Path) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text("sharding:\n  enabled: true\n")
    assert parse("--config", str(path)).sharding.enabled
    assert not parse("--config", str(path), "--once").sharding.enabled


def test_sharding_without_leader_election_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text("sharding:\n  enabled: true\n")
    with pytest.raises(ConfigError, match="sharding.enabled.*needs leaderElection.enabled"):
        parse("--config", str(path), "--leader-elect=false")
