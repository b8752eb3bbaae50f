"""Controller configuration: immutable, validated settings read from a YAML file.

The YAML document uses camelCase keys (see config/controller.yaml, which lists every
option with its default); the Python side is a tree of frozen dataclasses with
snake_case fields. Durations are floats in seconds and may be written in YAML either
as numbers of seconds or as Go-style strings ("500ms", "10s", "5m", "1h", "1m30s").

Validation is strict so that nothing starts half-configured: unknown keys, wrong
types and out-of-range values raise ConfigError naming the dotted key
(e.g. "backoff.cap"). The schema below is the single source of truth for the YAML
key names, the readers that validate each value, and the reverse mapping used by
Config.to_dict().
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml


class ConfigError(Exception):
    """An invalid configuration; `key` is the dotted YAML path, or None for file-level problems.

    Errors from load_config() also carry the file and, when known, the 1-based line and column
    of the offending key or YAML token; str() is then one line in the compiler style
    `FILE:LINE:COLUMN: invalid config key 'backoff.cap': must be ...`.
    """

    def __init__(self, key: str | None, message: str, *, source: str | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message
        self.source = source
        self.line = line
        self.column = column

    def at(self, source: str, mark: Any = None) -> ConfigError:
        """This error located in file `source` at a yaml Mark (0-based line and column), if any."""
        return ConfigError(self.key, self.message, source=source,
                           line=None if mark is None else mark.line + 1,
                           column=None if mark is None else mark.column + 1)

    def __str__(self) -> str:
        what = (f"invalid config: {self.message}" if self.key is None
                else f"invalid config key '{self.key}': {self.message}")
        if self.source is None:
            return what
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.column}"
        return f"{where}: {what}"


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class ResyncConfig:
    """Scheduled resync: every cached AppTask is re-enqueued each `period` (+/- jitter)."""

    period: float = 300.0
    jitter: float = 0.1


@dataclass(frozen=True)
class BackoffConfig:
    """Per-key retry delay: min(cap, base * factor**failures), shortened by up to `jitter`."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.1


@dataclass(frozen=True)
class RateLimitConfig:
    """Token bucket shared by all API writes."""

    qps: float = 20.0
    burst: int = 50


@dataclass(frozen=True)
class TimeoutsConfig:
    """Client-side request timeout and server-side watch timeout (also the watches' liveness
    check: see watcher.py)."""

    request: float = 30.0
    watch: float = 30.0


@dataclass(frozen=True)
class ApplyConfig:
    """Server-side apply options."""

    force: bool = True
    adopt_existing: bool = False


@dataclass(frozen=True)
class FightsConfig:
    """Detection of and backoff from field-ownership fights with other managers."""

    threshold: int = 3
    window: float = 60.0
    backoff_base: float = 5.0
    backoff_cap: float = 600.0


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Lease-based leader election (client-go semantics)."""

    enabled: bool = True
    namespace: str = "ssa-controller-system"
    lease_name: str = "ssa-controller"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True)
class ServerConfig:
    """HTTP endpoints; a port of 0 disables that server.

    With `secure_metrics` (the default, as kubebuilder v4 scaffolds it) /metrics is served over
    HTTPS and each scrape is authenticated by a TokenReview and authorized by a
    SubjectAccessReview; the certificate is `metrics_cert_dir`/tls.crt and tls.key, or a
    self-signed one generated at start when that is empty.
    """

    bind_address: str = "0.0.0.0"
    metrics_port: int = 8080
    health_port: int = 8081
    secure_metrics: bool = True
    metrics_cert_dir: str = ""


@dataclass(frozen=True)
class EventsConfig:
    """Per-AppTask token bucket for Kubernetes Events."""

    qps: float = 0.1
    burst: int = 10


@dataclass(frozen=True)
class LoggingConfig:
    """Log level (debug|info|warning|error) and format (text|json)."""

    level: str = "info"
    format: str = "text"


@dataclass(frozen=True)
class Config:
    """The whole controller configuration; `parse_config({})` gives the defaults."""

    field_manager: str = "ssa-controller"
    namespaces: tuple[str, ...] = ()
    dry_run: bool = False
    workers: int = 2
    resync: ResyncConfig = field(default_factory=ResyncConfig)
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    apply: ApplyConfig = field(default_factory=ApplyConfig)
    fights: FightsConfig = field(default_factory=FightsConfig)
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    shutdown_grace_period: float = 30.0

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with top-level fields replaced (e.g. dry_run=True from a CLI flag), re-validated."""
        return parse_config(dataclasses.replace(self, **changes).to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a YAML-shaped mapping (camelCase keys, durations in seconds)."""
        return _dump(_CONFIG, self)


# --------------------------------------------------------------------------- public functions


def parse_config(data: Mapping[str, Any] | None) -> Config:
    """Validate a parsed YAML document (None or {} gives the defaults) into a Config."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(None, f"the top-level document must be a mapping, got {_kind(data)}")
    config: Config = _read_section(_CONFIG, data, "")
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML config file; every problem is reported as ConfigError naming
    the file and, where there is one, the line and column (of the key, or the YAML error)."""
    source = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(None, f"cannot read config file: {exc.strerror}",
                          source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(None, f"config file is not UTF-8 (byte {exc.start} is "
                          f"{exc.object[exc.start]:#04x})", source=source) from None
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source) from None
    if root is None:
        raise ConfigError(None, "the file holds no YAML document (it is empty or all comments); "
                          "write {} for all defaults", source=source)
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise exc.at(source, _locate(root, exc.key)) from None


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_FULL = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_HELP = "a number of seconds or a duration string like '500ms', '10s', '5m', '1m30s'"


def parse_duration(value: object, key: str) -> float:
    """Seconds from a number of seconds or a Go-style duration string; ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, f"must be {_DURATION_HELP}, got {_kind(value)}")
    seconds = _parse_duration_string(value, key) if isinstance(value, str) else float(value)
    if not math.isfinite(seconds):
        raise ConfigError(key, f"must be a finite duration, got {_kind(value)}")
    return seconds


def _parse_duration_string(text: str, key: str) -> float:
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body[1:] if body[:1] in ("-", "+") else body
    if body == "0":
        return 0.0
    if not _DURATION_FULL.fullmatch(body):
        raise ConfigError(key, f"must be {_DURATION_HELP}, got {_kind(text)}")
    total = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(body))
    return sign * total


# --------------------------------------------------------------------------- value readers
# A reader takes (raw YAML value, dotted key) and returns the validated Python value.

Reader = Callable[[object, str], Any]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _kind(value: object) -> str:
    """How a YAML value is described in error messages, e.g. "boolean (true)"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"integer ({value})"
    if isinstance(value, float):
        return f"number ({value:g})"
    if isinstance(value, str):
        return f"string ({value!r})"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _plain(value: float) -> str:
    return f"{value:g}"


def _check_bounds(
    value: float,
    key: str,
    fmt: Callable[[float], str],
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> None:
    if ge is not None and le is not None and not ge <= value <= le:
        raise ConfigError(key, f"must be between {fmt(ge)} and {fmt(le)}, got {fmt(value)}")
    if gt is not None and not value > gt:
        raise ConfigError(key, f"must be > {fmt(gt)}, got {fmt(value)}")
    if ge is not None and not value >= ge:
        raise ConfigError(key, f"must be >= {fmt(ge)}, got {fmt(value)}")
    if le is not None and not value <= le:
        raise ConfigError(key, f"must be <= {fmt(le)}, got {fmt(value)}")


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be a boolean (true or false), got {_kind(value)}")
    return value


def _integer(*, ge: int, le: int | None = None) -> Reader:
    def read(value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {_kind(value)}")
        _check_bounds(value, key, _plain, ge=ge, le=le)
        return value

    return read


def _number(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Reader:
    def read(value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(key, f"must be a number, got {_kind(value)}")
        _check_bounds(float(value), key, _plain, gt=gt, ge=ge, le=le)
        return float(value)

    return read


def _duration(*, gt: float | None = None, ge: float | None = None) -> Reader:
    def read(value: object, key: str) -> float:
        seconds = parse_duration(value, key)
        _check_bounds(seconds, key, _seconds, gt=gt, ge=ge)
        return seconds

    return read


def _string(*, max_len: int, pattern: re.Pattern[str] | None = None, what: str = "string") -> Reader:
    def read(value: object, key: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a {what}, got {_kind(value)}")
        if not value or len(value) > max_len:
            raise ConfigError(
                key, f"must be a non-empty {what} of at most {max_len} characters, got {value!r}"
            )
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(key, f"must be a {what}, got {value!r}")
        return value

    return read


def _choice(*options: str) -> Reader:
    def read(value: object, key: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise ConfigError(key, f"must be one of {', '.join(options)}; got {_kind(value)}")
        return value

    return read


_fraction = _number(ge=0.0, le=1.0)
_port = _integer(ge=0, le=65535)
_positive_duration = _duration(gt=0.0)
_dns_label = _string(
    max_len=63, pattern=_DNS_LABEL, what="DNS-1123 label (lowercase letters, digits and '-')"
)
_dns_subdomain = _string(
    max_len=253, pattern=_DNS_SUBDOMAIN, what="DNS-1123 subdomain (lowercase letters, digits, '-' and '.')"
)


def _optional_path(value: object, key: str) -> str:
    """A file system path, or "" for none."""
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a path (a string, empty for none), got {_kind(value)}")
    if len(value) > 4096 or "\0" in value:
        raise ConfigError(key, f"must be a path of at most 4096 characters without NUL, got {value!r}")
    return value


def _namespaces(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of namespace names, got {_kind(value)}")
    names = tuple(_dns_label(item, f"{key}[{i}]") for i, item in enumerate(value))
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{key}[{i}]", f"duplicate namespace {name!r}")
    return names


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class _Section:
    """A mapping in the YAML: its dataclass, its keys with their readers, a cross-field check."""

    cls: type
    fields: Mapping[str, Reader]
    check: Callable[[Any, str], None] | None = None

    def reader(self) -> Reader:
        return lambda value, key: _read_section(self, value, key)


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _read_section(section: _Section, value: object, key: str) -> Any:
    if value is None:  # a section whose keys are all commented out
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {_kind(value)}")
    _reject_unknown(section, value, key)
    kwargs = {
        _snake(name): read(value[name], _join(key, name))
        for name, read in section.fields.items()
        if name in value
    }
    result = section.cls(**kwargs)
    if section.check is not None:
        section.check(result, key)
    return result


def _reject_unknown(section: _Section, value: Mapping[Any, Any], key: str) -> None:
    allowed = list(section.fields)
    for name in value:
        if name not in section.fields:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(_join(key, name), f"unknown key{hint}; allowed keys: {', '.join(allowed)}")


def _dump(section: _Section, obj: Any) -> dict[str, Any]:
    return {name: _dump_value(getattr(obj, _snake(name))) for name in section.fields}


def _dump_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _dump(_SECTIONS[type(value)], value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _check_backoff(cfg: BackoffConfig, key: str) -> None:
    if cfg.cap < cfg.base:
        raise ConfigError(
            f"{key}.cap", f"must be >= {key}.base ({_seconds(cfg.base)}), got {_seconds(cfg.cap)}"
        )


def _check_fights(cfg: FightsConfig, key: str) -> None:
    if cfg.backoff_cap < cfg.backoff_base:
        raise ConfigError(
            f"{key}.backoffCap",
            f"must be >= {key}.backoffBase ({_seconds(cfg.backoff_base)}), got {_seconds(cfg.backoff_cap)}",
        )


def _check_server(cfg: ServerConfig, key: str) -> None:
    if cfg.metrics_cert_dir and not cfg.secure_metrics:
        raise ConfigError(
            f"{key}.metricsCertDir",
            f"is only used with {key}.secureMetrics: true, got {cfg.metrics_cert_dir!r} with false",
        )


LEADER_JITTER_FACTOR = 1.2
"""client-go's leaderelection.JitterFactor: acquire retries wait retry_period * [1, 2.2)."""


def _check_leader_election(cfg: LeaderElectionConfig, key: str) -> None:
    """client-go's NewLeaderElector checks: leaseDuration > renewDeadline > 1.2 * retryPeriod."""
    if cfg.lease_duration <= cfg.renew_deadline:
        raise ConfigError(
            f"{key}.leaseDuration",
            f"must be > {key}.renewDeadline ({_seconds(cfg.renew_deadline)}), "
            f"got {_seconds(cfg.lease_duration)}",
        )
    min_renew = LEADER_JITTER_FACTOR * cfg.retry_period
    if cfg.renew_deadline <= min_renew:
        raise ConfigError(
            f"{key}.renewDeadline",
            f"must be > {LEADER_JITTER_FACTOR:g} x {key}.retryPeriod ({_seconds(min_renew)}), "
            f"got {_seconds(cfg.renew_deadline)}",
        )


_RESYNC = _Section(ResyncConfig, {"period": _duration(ge=1.0), "jitter": _fraction})
_BACKOFF = _Section(
    BackoffConfig,
    {"base": _positive_duration, "factor": _number(ge=1.0), "cap": _positive_duration, "jitter": _fraction},
    _check_backoff,
)
_RATE_LIMIT = _Section(RateLimitConfig, {"qps": _number(gt=0.0), "burst": _integer(ge=1)})
_TIMEOUTS = _Section(TimeoutsConfig, {"request": _positive_duration, "watch": _duration(ge=1.0)})
_APPLY = _Section(ApplyConfig, {"force": _boolean, "adoptExisting": _boolean})
_FIGHTS = _Section(
    FightsConfig,
    {
        "threshold": _integer(ge=2),
        "window": _positive_duration,
        "backoffBase": _positive_duration,
        "backoffCap": _positive_duration,
    },
    _check_fights,
)
_LEADER_ELECTION = _Section(
    LeaderElectionConfig,
    {
        "enabled": _boolean,
        "namespace": _dns_label,
        "leaseName": _dns_subdomain,
        "leaseDuration": _positive_duration,
        "renewDeadline": _positive_duration,
        "retryPeriod": _positive_duration,
    },
    _check_leader_election,
)
_SERVER = _Section(
    ServerConfig,
    {
        "bindAddress": _string(max_len=253),
        "metricsPort": _port,
        "healthPort": _port,
        "secureMetrics": _boolean,
        "metricsCertDir": _optional_path,
    },
    _check_server,
)
_EVENTS = _Section(EventsConfig, {"qps": _number(gt=0.0), "burst": _integer(ge=1)})
_LOGGING = _Section(
    LoggingConfig,
    {"level": _choice("debug", "info", "warning", "error"), "format": _choice("text", "json")},
)
_CONFIG = _Section(
    Config,
    {
        "fieldManager": _string(max_len=128),
        "namespaces": _namespaces,
        "dryRun": _boolean,
        "workers": _integer(ge=1, le=64),
        "resync": _RESYNC.reader(),
        "backoff": _BACKOFF.reader(),
        "rateLimit": _RATE_LIMIT.reader(),
        "timeouts": _TIMEOUTS.reader(),
        "apply": _APPLY.reader(),
        "fights": _FIGHTS.reader(),
        "leaderElection": _LEADER_ELECTION.reader(),
        "server": _SERVER.reader(),
        "events": _EVENTS.reader(),
        "logging": _LOGGING.reader(),
        "shutdownGracePeriod": _duration(ge=0.0),
    },
)
_SECTIONS: dict[type, _Section] = {
    s.cls: s
    for s in (
        _RESYNC,
        _BACKOFF,
        _RATE_LIMIT,
        _TIMEOUTS,
        _APPLY,
        _FIGHTS,
        _LEADER_ELECTION,
        _SERVER,
        _EVENTS,
        _LOGGING,
        _CONFIG,
    )
}


# --------------------------------------------------------------------------- YAML loading


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == _YAML_MERGE_TAG:
                continue  # "<<: *anchor" merges may be overridden by explicit keys
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader rejects unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YAML_MERGE_TAG = "tag:yaml.org,2002:merge"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> ConfigError:
    """A YAML syntax error as one ConfigError line at the problem's line and column."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = _one_line(exc.problem or "")
        if exc.context:
            problem = f"{_one_line(exc.context)}: {problem}"
        return ConfigError(None, f"invalid YAML: {problem}").at(source, mark)
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        before = text[:exc.position]
        line, column = before.count("\n"), exc.position - (before.rfind("\n") + 1)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return ConfigError(None, f"invalid YAML: character #x{char:02x} is not allowed",
                           source=source, line=line + 1, column=column + 1)
    return ConfigError(None, f"invalid YAML: {_one_line(str(exc))}", source=source)


_KEY_PART = re.compile(r"\[(\d+)\]")


def _locate(node: yaml.Node, key: str | None) -> Any:
    """The yaml Mark of the dotted `key` ("backoff.cap", "namespaces[1]") in the composed
    document: of its key in the mapping (or its list item); of the deepest part present when the
    key itself is not written (a cross-field check against a default); the document's when None."""
    mark = node.start_mark
    rest = key or ""
    while rest:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
                if name is not None and (rest == name or rest.startswith((name + ".", name + "["))):
                    mark, node, rest = key_node.start_mark, value_node, rest[len(name):]
                    break
            else:
                return mark
        elif isinstance(node, yaml.SequenceNode) and (index := _KEY_PART.match(rest)):
            position = int(index.group(1))
            if position >= len(node.value):
                return mark
            node = node.value[position]
            mark, rest = node.start_mark, rest[index.end():]
        else:
            return mark
        rest = rest[1:] if rest.startswith(".") else rest
    return mark
