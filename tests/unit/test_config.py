"""Unit tests for settings.config: defaults, durations, validation messages, YAML loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ssa_controller.settings.config import (
    BackoffConfig,
    Config,
    ConfigError,
    LeaderElectionConfig,
    load_config,
    parse_config,
    parse_duration,
)

SHIPPED_YAML = Path(__file__).resolve().parents[2] / "config" / "controller.yaml"


def rejects(data: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)  # type: ignore[arg-type]
    return info.value


# --------------------------------------------------------------------------- defaults


def test_defaults_match_the_schema() -> None:
    cfg = parse_config({})
    assert cfg == Config()
    assert cfg.field_manager == "ssa-controller"
    assert cfg.namespaces == ()
    assert cfg.dry_run is False
    assert cfg.show_values is False
    assert cfg.workers == 2
    assert (cfg.resync.period, cfg.resync.jitter) == (300.0, 0.1)
    assert cfg.backoff == BackoffConfig(base=0.5, factor=2.0, cap=300.0, jitter=0.1)
    assert (cfg.rate_limit.qps, cfg.rate_limit.burst) == (20.0, 50)
    assert (cfg.timeouts.request, cfg.timeouts.watch) == (30.0, 30.0)
    assert (cfg.apply.force, cfg.apply.adopt_existing) == (True, False)
    fights = cfg.fights
    assert (fights.threshold, fights.window, fights.backoff_base, fights.backoff_cap) == (
        3, 60.0, 5.0, 600.0)
    assert cfg.leader_election == LeaderElectionConfig(
        enabled=True,
        namespace="ssa-controller-system",
        lease_name="ssa-controller",
        lease_duration=15.0,
        renew_deadline=10.0,
        retry_period=2.0,
    )
    assert (cfg.server.bind_address, cfg.server.metrics_port, cfg.server.health_port) == (
        "0.0.0.0",
        8080,
        8081,
    )
    assert (cfg.server.secure_metrics, cfg.server.metrics_cert_dir) == (True, "")
    assert (cfg.events.qps, cfg.events.burst) == (0.1, 10)
    assert (cfg.logging.level, cfg.logging.format) == ("info", "text")
    assert cfg.shutdown_grace_period == 30.0
    assert cfg.ignored_namespaces == ("kube-*",)
    assert cfg.pod_template.restricted is True
    assert "istio.io/" in cfg.pod_template.reserved_keys
    assert "app.kubernetes.io/" in cfg.pod_template.reserved_keys
    assert cfg.pod_template.allowed_keys == ()


def test_key_patterns_take_prefixes_and_whole_keys() -> None:
    keys = ("example.com/", "app.kubernetes.io/managed-by", "app", "a.b-c.d/Name_1.x")
    assert parse_config({"podTemplate": {"allowedKeys": list(keys)}}).pod_template \
        .allowed_keys == keys


def test_none_and_null_sections_give_defaults() -> None:
    assert parse_config(None) == Config()
    assert parse_config({"backoff": None, "logging": None}) == Config()


def test_config_is_frozen_and_hashable() -> None:
    cfg = parse_config({})
    with pytest.raises(ValidationError, match="frozen"):
        cfg.workers = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.backoff.cap = 1.0  # type: ignore[misc]
    assert hash(cfg) == hash(Config())
    assert len({cfg, Config(), parse_config({"workers": 3})}) == 2


def test_partial_section_keeps_other_defaults() -> None:
    cfg = parse_config({"backoff": {"cap": "1m"}, "namespaces": ["a", "b-2"], "workers": 8})
    assert cfg.backoff == BackoffConfig(cap=60.0)
    assert cfg.namespaces == ("a", "b-2")
    assert cfg.workers == 8


def test_yaml_keys_are_camel_case_and_python_names_snake_case() -> None:
    """The YAML takes only the camelCase keys; Python code constructs by field name."""
    parsed = parse_config({"leaderElection": {"leaseDuration": "20s"}})
    assert parsed.leader_election.lease_duration == 20.0
    rejected = rejects({"leaderElection": {"lease_duration": "20s"}})
    assert rejected.key == "leaderElection.lease_duration"
    assert LeaderElectionConfig(lease_duration=20.0).lease_duration == 20.0
    assert list(Config().to_dict()["server"]) == [
        "bindAddress", "metricsHost", "metricsPort", "healthHost", "healthPort", "secureMetrics",
        "metricsCertDir", "metricsTokenAudiences"]


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ValidationError):
        BackoffConfig(base=2.0, cap=1.0)


def test_to_dict_round_trips() -> None:
    cfg = parse_config({"namespaces": ["x"], "leaderElection": {"enabled": False}, "dryRun": True})
    data = cfg.to_dict()
    assert data["leaderElection"]["leaseDuration"] == 15.0
    assert data["namespaces"] == ["x"]
    assert parse_config(data) == cfg


def test_with_overrides_replaces_key_by_key_and_revalidates() -> None:
    cfg = parse_config({"server": {"metricsPort": 9000, "healthPort": 9001}})
    assert cfg.with_overrides({"dryRun": True}).dry_run is True
    assert cfg.with_overrides({"dryRun": True}).workers == 2
    assert cfg.with_overrides({"namespaces": ["a"]}).namespaces == ("a",)
    server = cfg.with_overrides({"server": {"metricsPort": 0}}).server
    assert (server.metrics_port, server.health_port) == (0, 9001)  # the rest of the section kept
    with pytest.raises(ConfigError) as info:
        cfg.with_overrides({"workers": 0})
    assert info.value.key == "workers"
    with pytest.raises(ConfigError) as info:
        cfg.with_overrides({"nope": 1})
    assert info.value.key == "nope"


def test_each_server_listens_on_its_own_host_or_the_bind_address() -> None:
    server = parse_config({"server": {"bindAddress": "10.0.0.1", "healthHost": "::"}}).server
    assert (server.metrics_listen, server.health_listen) == ("10.0.0.1", "::")


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (0.25, 0.25),
        ("0", 0.0),
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("2000ns", 2e-6),
        ("100ns", 0.0),  # durationpy's resolution is a microsecond (a datetime.timedelta)
        (" 2s ", 2.0),
        ("-1s", -1.0),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value, "k") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "10", "s", "5 m", "1m30", "10sec", "1d", "ms", "--1s", True, None, [1],
              float("inf"), "1w", "1y", "1mm", "1s-2s", "1s+2s", "1s 2s", "1.2.3s", ".s", "10S",
              "9999999999999h"]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "timeouts.request")
    assert info.value.key == "timeouts.request"


def test_duration_fields_accept_strings_and_numbers() -> None:
    cfg = parse_config(
        {"resync": {"period": "1m30s"}, "timeouts": {"request": 5}, "backoff": {"base": "250ms"}}
    )
    assert cfg.resync.period == 90.0
    assert cfg.timeouts.request == 5.0
    assert isinstance(cfg.timeouts.request, float)
    assert cfg.backoff.base == 0.25


# --------------------------------------------------------------------------- rejections


def test_error_message_format() -> None:
    err = rejects({"backoff": {"cap": "100ms"}})
    assert err.key == "backoff.cap"
    assert str(err) == "invalid config key 'backoff.cap': must be >= backoff.base (0.5s), got 0.1s"
    assert err.message == "must be >= backoff.base (0.5s), got 0.1s"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"workerz": 2}, "workerz"),
        ({"backoff": {"caps": 1}}, "backoff.caps"),
        ({"leaderElection": {"lease_duration": "15s"}}, "leaderElection.lease_duration"),
        ({"server": {"port": 1}}, "server.port"),
    ],
)
def test_unknown_keys_are_rejected_with_allowed_list(data: object, key: str) -> None:
    err = rejects(data)
    assert err.key == key
    assert "unknown key" in err.message
    assert "allowed keys:" in err.message


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"workerz": 1, "backoff": {"base": 0}}, "workerz"),
        ({"backoff": {"base": 0, "caps": 1}}, "backoff.caps"),
        ({"backoff": {"base": 0}, "rateLimit": {"qpz": 1}}, "backoff.base"),
        ({"rateLimit": {"qps": 0}, "backoff": {"cap": "100ms"}}, "backoff.cap"),
        ({"workers": 0, "dryRun": 1}, "dryRun"),
    ],
)
def test_of_several_problems_the_first_is_reported(data: object, key: str) -> None:
    """Keys in declaration order, depth first; in each mapping its unknown keys first."""
    assert rejects(data).key == key


def test_unknown_key_suggests_close_match() -> None:
    err = rejects({"backoff": {"caps": 1}})
    assert "did you mean 'cap'?" in err.message
    assert "base, factor, cap, jitter" in err.message


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"workers": True}, "workers", "must be an integer, got boolean (true)"),
        ({"workers": 2.0}, "workers", "must be an integer"),
        ({"workers": "2"}, "workers", "must be an integer, got string ('2')"),
        ({"dryRun": "yes"}, "dryRun", "must be a boolean"),
        ({"dryRun": 1}, "dryRun", "must be a boolean"),
        ({"rateLimit": {"qps": "20"}}, "rateLimit.qps", "must be a number, got string"),
        ({"rateLimit": {"qps": False}}, "rateLimit.qps", "must be a number, got boolean"),
        ({"rateLimit": {"burst": 5.5}}, "rateLimit.burst", "must be an integer"),
        ({"backoff": {"jitter": None}}, "backoff.jitter", "must be a number, got null"),
        ({"backoff": {"factor": float("nan")}}, "backoff.factor", "must be a number"),
        ({"resync": {"period": True}}, "resync.period",
         "must be a number of seconds or a duration"),
        ({"namespaces": "default"}, "namespaces", "must be a list"),
        ({"namespaces": [1]}, "namespaces[0]", "must be a DNS-1123 label"),
        ({"fieldManager": 7}, "fieldManager", "must be a string"),
        ({"logging": "debug"}, "logging", "must be a mapping, got string"),
        ({"logging": {"level": 1}}, "logging.level", "must be one of debug, info, warning, error"),
        ({"server": {"bindAddress": None}}, "server.bindAddress", "must be a string"),
        ({"server": {"secureMetrics": "false"}}, "server.secureMetrics", "must be a boolean"),
        ({"server": {"metricsCertDir": None}}, "server.metricsCertDir", "must be a path"),
    ],
)
def test_wrong_types_are_rejected(data: object, key: str, fragment: str) -> None:
    err = rejects(data)
    assert err.key == key
    assert fragment in err.message


def test_secure_metrics_settings() -> None:
    cfg = parse_config({"server": {"metricsCertDir": "/etc/metrics-certs"}})
    assert (cfg.server.secure_metrics, cfg.server.metrics_cert_dir) == (True, "/etc/metrics-certs")
    assert parse_config({"server": {"secureMetrics": False}}).server.secure_metrics is False
    err = rejects({"server": {"secureMetrics": False, "metricsCertDir": "/etc/metrics-certs"}})
    assert err.key == "server.metricsCertDir"
    assert "only used with server.secureMetrics: true" in err.message
    assert rejects({"server": {"metricsCertDir": "x" * 4097}}).key == "server.metricsCertDir"
    cfg = parse_config({"server": {"metricsTokenAudiences": ["ssa-controller-metrics"]}})
    assert cfg.server.metrics_token_audiences == ("ssa-controller-metrics",)
    err = rejects({"server": {"secureMetrics": False, "metricsTokenAudiences": ["m"]}})
    assert (err.key, "only used with server.secureMetrics: true" in err.message) == (
        "server.metricsTokenAudiences", True)
    assert rejects({"server": {"metricsTokenAudiences": [""]}}).key == \
        "server.metricsTokenAudiences[0]"


def test_int_is_accepted_where_a_float_is_expected() -> None:
    cfg = parse_config({"backoff": {"factor": 3, "jitter": 0}, "events": {"qps": 1}})
    assert cfg.backoff.factor == 3.0
    assert isinstance(cfg.backoff.factor, float)
    assert cfg.events.qps == 1.0


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"workers": 0}, "workers", "must be between 1 and 64, got 0"),
        ({"workers": 65}, "workers", "must be between 1 and 64, got 65"),
        ({"server": {"metricsPort": 65536}}, "server.metricsPort", "between 0 and 65535"),
        ({"server": {"healthPort": -1}}, "server.healthPort", "between 0 and 65535"),
        ({"resync": {"jitter": 1.5}}, "resync.jitter", "must be between 0 and 1, got 1.5"),
        ({"resync": {"period": "500ms"}}, "resync.period", "must be >= 1s, got 0.5s"),
        ({"backoff": {"jitter": -0.1}}, "backoff.jitter", "between 0 and 1"),
        ({"backoff": {"factor": 0.5}}, "backoff.factor", "must be >= 1, got 0.5"),
        ({"backoff": {"base": 0}}, "backoff.base", "must be > 0s, got 0s"),
        ({"backoff": {"base": "1m", "cap": "30s"}}, "backoff.cap",
         "must be >= backoff.base (60s), got 30s"),
        ({"rateLimit": {"qps": 0}}, "rateLimit.qps", "must be > 0, got 0"),
        ({"rateLimit": {"burst": 0}}, "rateLimit.burst", "must be >= 1, got 0"),
        ({"events": {"qps": -1}}, "events.qps", "must be > 0"),
        ({"events": {"burst": 0}}, "events.burst", "must be >= 1"),
        ({"timeouts": {"request": "-1s"}}, "timeouts.request", "must be > 0s, got -1s"),
        ({"timeouts": {"watch": "0.5s"}}, "timeouts.watch", "must be >= 1s"),
        ({"fights": {"threshold": 1}}, "fights.threshold", "must be >= 2, got 1"),
        ({"fights": {"window": 0}}, "fights.window", "must be > 0s"),
        (
            {"fights": {"backoffBase": "1m", "backoffCap": "30s"}},
            "fights.backoffCap",
            "must be >= fights.backoffBase",
        ),
        ({"shutdownGracePeriod": -1}, "shutdownGracePeriod", "must be >= 0s, got -1s"),
        ({"logging": {"level": "verbose"}}, "logging.level",
         "must be one of debug, info, warning, error"),
        ({"logging": {"level": "INFO"}}, "logging.level", "must be one of"),
        ({"logging": {"format": "yaml"}}, "logging.format", "must be one of text, json"),
        ({"fieldManager": ""}, "fieldManager", "non-empty"),
        ({"fieldManager": "x" * 129}, "fieldManager", "at most 128 characters"),
        ({"namespaces": ["ok", "Not_OK"]}, "namespaces[1]", "DNS-1123 label"),
        ({"namespaces": ["-bad"]}, "namespaces[0]", "DNS-1123 label"),
        ({"namespaces": ["a" * 64]}, "namespaces[0]", "at most 63 characters"),
        ({"namespaces": ["a", "b", "a"]}, "namespaces[2]", "duplicate namespace 'a'"),
        ({"leaderElection": {"namespace": "Kube_System"}}, "leaderElection.namespace",
         "DNS-1123 label"),
        ({"leaderElection": {"leaseName": "bad name"}}, "leaderElection.leaseName",
         "DNS-1123 subdomain"),
        ({"leaderElection": {"retryPeriod": 0}}, "leaderElection.retryPeriod", "must be > 0s"),
        ({"sharding": {"enabled": True}, "leaderElection": {"enabled": False}},
         "sharding.enabled", "needs leaderElection.enabled: true"),
        ({"sharding": {"enabled": "yes"}}, "sharding.enabled", "must be"),
        ({"sharding": {"enabled": True}, "leaderElection": {"leaseName": "a" * 64}},
         "sharding.enabled", "leaseName of at most 63 characters"),
        ({"ignoredNamespaces": ["kube-*", "Kube_*"]}, "ignoredNamespaces[1]",
         "namespace name or pattern"),
        ({"ignoredNamespaces": "kube-*"}, "ignoredNamespaces",
         "must be a list of namespace names or patterns"),
        ({"podTemplate": {"reservedKeys": ["istio.io"]}}, "podTemplate.reservedKeys[0]",
         "must be a label or annotation key, or a DNS subdomain followed by '/'"),
        ({"podTemplate": {"allowedKeys": ["ok/", "Istio.io/"]}}, "podTemplate.allowedKeys[1]",
         "label or annotation key"),
        ({"podTemplate": {"allowedKeys": ["a/b/c"]}}, "podTemplate.allowedKeys[0]",
         "label or annotation key"),
        ({"podTemplate": {"restricted": "yes"}}, "podTemplate.restricted", "must be a boolean"),
        ({"admission": {"allowPrivileged": "no"}}, "admission.allowPrivileged",
         "must be a boolean"),
        ({"admission": {"allowedCapabilities": ["NET_ADMIN", "net admin"]}},
         "admission.allowedCapabilities[1]", "Linux capability"),
        ({"admission": {"allowedCapabilities": "NET_ADMIN"}}, "admission.allowedCapabilities",
         "must be a list of capabilities"),
        ({"admission": {"serviceAccountNames": ["Web"]}}, "admission.serviceAccountNames[0]",
         "DNS-1123 subdomain"),
        ({"admission": {"serviceTypes": ["ClusterIP", "Ingress"]}}, "admission.serviceTypes[1]",
         "ClusterIP"),
    ],
)
def test_out_of_range_values_are_rejected(data: object, key: str, fragment: str) -> None:
    err = rejects(data)
    assert err.key == key
    assert fragment in err.message


def test_boundary_values_are_accepted() -> None:
    cfg = parse_config(
        {
            "workers": 64,
            "server": {"metricsPort": 0, "healthPort": 65535},
            "resync": {"period": "1s", "jitter": 1},
            "backoff": {"base": "1s", "cap": "1s", "factor": 1, "jitter": 0},
            "fights": {"threshold": 2},
            "fieldManager": "m" * 128,
            "shutdownGracePeriod": 0,
            "leaderElection": {"leaseName": "lease.example.com"},
        }
    )
    assert cfg.workers == 64
    assert cfg.server.metrics_port == 0
    assert cfg.backoff.cap == cfg.backoff.base == 1.0


@pytest.mark.parametrize(
    ("election", "key", "fragment"),
    [
        (
            {"leaseDuration": "10s"},
            "leaderElection.leaseDuration",
            "must be > leaderElection.renewDeadline (10s)",
        ),
        ({"leaseDuration": "5s"}, "leaderElection.leaseDuration", "got 5s"),
        (
            {"renewDeadline": "2s"},
            "leaderElection.renewDeadline",
            "must be > 1.2 x leaderElection.retryPeriod",
        ),
        ({"retryPeriod": "9s"}, "leaderElection.renewDeadline", "(10.8s), got 10s"),
    ],
)
def test_leader_election_ordering_matches_client_go(
    election: dict[str, str], key: str, fragment: str
) -> None:
    err = rejects({"leaderElection": election})
    assert err.key == key
    assert fragment in err.message


def test_leader_election_ordering_is_checked_even_when_disabled() -> None:
    err = rejects({"leaderElection": {"enabled": False, "leaseDuration": "1s"}})
    assert err.key == "leaderElection.leaseDuration"


@pytest.mark.parametrize("document", [[1, 2], "text", 3])
def test_top_level_must_be_a_mapping(document: object) -> None:
    err = rejects(document)
    assert err.key is None
    assert str(err).startswith("invalid config: the top-level document must be a mapping")


# --------------------------------------------------------------------------- files


def test_shipped_yaml_equals_defaults() -> None:
    assert load_config(SHIPPED_YAML) == parse_config({})


def test_shipped_yaml_lists_every_option() -> None:
    import yaml

    raw = yaml.safe_load(SHIPPED_YAML.read_text())
    defaults = parse_config({}).to_dict()
    assert raw.keys() == defaults.keys()
    for name, value in defaults.items():
        if isinstance(value, dict):
            assert raw[name].keys() == value.keys(), name


def test_shipped_yaml_documents_every_option() -> None:
    lines = SHIPPED_YAML.read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert lines[i - 1].strip().startswith("#"), f"undocumented option: {stripped}"


def test_load_config_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("workers: 4\nbackoff:\n  cap: 1m\nnamespaces: [team-a]\n")
    cfg = load_config(path)
    assert cfg.workers == 4
    assert cfg.backoff.cap == 60.0
    assert cfg.namespaces == ("team-a",)


@pytest.mark.parametrize("content", ["", "\n\n", "# nothing configured\n"])
def test_load_config_empty_file_is_refused(tmp_path: Path, content: str) -> None:
    """A file given with --config that holds nothing (a truncated file, a wrongly mounted
    ConfigMap key) is a mistake, not a request for defaults: `{}` says that."""
    path = tmp_path / "empty.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert (info.value.key, info.value.source) == (None, str(path))
    assert "holds no YAML document" in str(info.value)
    path.write_text("{}\n")
    assert load_config(str(path)) == Config()


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.key is None
    assert "cannot read config file" in str(info.value)
    assert "nope.yaml" in str(info.value)


def test_load_config_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"fieldManager: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_load_config_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("workers: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_load_config_rejects_duplicate_keys(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("workers: 2\nbackoff:\n  cap: 1m\nworkers: 3\n")
    with pytest.raises(ConfigError, match="duplicate key 'workers'"):
        load_config(path)


def test_load_config_allows_yaml_merge_keys(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("events: &limits {qps: 1, burst: 2}\nrateLimit:\n  <<: *limits\n  burst: 5\n")
    cfg = load_config(path)
    assert (cfg.rate_limit.qps, cfg.rate_limit.burst) == (1.0, 5)


def test_load_config_validation_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("leaderElection:\n  renewDeadline: 20s\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "leaderElection.leaseDuration"


@pytest.mark.parametrize(
    ("content", "where", "fragment"),
    [
        ("workers: 2\nbackoff:\n  base: 1s\n  cap: 100ms\n",
         ":4:3: invalid config key 'backoff.cap'", "must be >= backoff.base (1s), got 0.1s"),
        ("namespaces:\n- ok\n- Not_OK\n", ":3:3: invalid config key 'namespaces[1]'", "DNS-1123"),
        ("namespaces: [a, B]\n", ":1:17: invalid config key 'namespaces[1]'", "DNS-1123"),
        ("resync:\n  perod: 5m\n", ":2:3: invalid config key 'resync.perod'",
         "did you mean 'period'"),
        ("x.y: 1\n", ":1:1: invalid config key 'x.y'", "unknown key"),
        ("server:\n  bindAddress: 0.0.0.0\n  metricsPort: -1\n",
         ":3:3: invalid config key 'server.metricsPort'", "between 0 and 65535"),
        # a cross-field check against a default: the deepest part that is written
        ("\nleaderElection:\n  renewDeadline: 20s\n",
         ":2:1: invalid config key 'leaderElection.leaseDuration'",
         "must be > leaderElection.renewDeadline (20s), got 15s"),
        ("- 1\n", ":1:1: invalid config: the top-level document must be a mapping", "got list"),
        ("workers: [1, 2\n", ":2:1: invalid config: invalid YAML:", "expected ',' or ']'"),
        ("workers: 2\n  backoff: 1\n", ":2:10: invalid config: invalid YAML:",
         "mapping values are not allowed here"),
        ("workers: 2\n\tfoo: 1\n", ":2:1: invalid config: invalid YAML:",
         "'\\t' that cannot start"),
        ("workers: 2\nbackoff: {}\nworkers: 3\n", ":3:1: invalid config: invalid YAML:",
         "found duplicate key 'workers'"),
        ("fieldManager: a\x01b\n", ":1:16: invalid config: invalid YAML:",
         "character #x01 is not allowed"),
        ("workers: !!python/object:os.system x\n", ":1:10: invalid config: invalid YAML:",
         "could not determine a constructor"),
        ("workers: 1\n---\nworkers: 2\n", ":2:1: invalid config: invalid YAML:",
         "expected a single document"),
    ],
)
def test_load_config_errors_name_file_line_and_column(
    tmp_path: Path, content: str, where: str, fragment: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}{where}"), text
    assert fragment in text
    assert "\n" not in text


def test_errors_without_a_file_keep_their_format() -> None:
    err = rejects({"workers": 0})
    assert (err.source, err.line, err.column) == (None, None, None)
    assert str(err) == "invalid config key 'workers': must be between 1 and 64, got 0"


@pytest.mark.parametrize("transport", ["builtin", "urllib3"])
def test_client_transport_names_one_of_the_clients_transports(transport: str) -> None:
    assert parse_config({}).client.transport == "builtin"
    assert parse_config({"client": {"transport": transport}}).client.transport == transport
    err = rejects({"client": {"transport": "h2"}})
    assert (err.key, err.message) == ("client.transport",
                                      "must be one of builtin, urllib3; got string ('h2')")
