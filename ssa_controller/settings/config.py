"""Controller configuration: immutable, validated settings read from a YAML file.

The YAML document uses camelCase keys (see config/controller.yaml, which lists every option
with its default); the Python side is a tree of frozen pydantic models with snake_case fields,
each declared once: its type, default and constraints (the YAML key is its camelCase alias).
Durations are floats in seconds and may be written in YAML either as numbers of seconds or as
Go-style strings ("500ms", "10s", "5m", "1h", "1m30s").

Validation is strict so that nothing starts half-configured: unknown keys, wrong types and
out-of-range values raise ConfigError naming the dotted key (e.g. "backoff.cap"); the wording
and the file positions come from config_errors.py.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import durationpy
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .config_errors import (
    ConfigError,
    Invalid,
    Words,
    describe,
    from_validation_error,
    locate,
    read_yaml,
)

__all__ = [
    "LEADER_JITTER_FACTOR", "ApplyConfig", "BackoffConfig", "ClientConfig", "Config", "ConfigError",
    "EventsConfig", "FightsConfig", "LeaderElectionConfig", "LoggingConfig", "PodTemplateConfig",
    "RateLimitConfig", "ResyncConfig", "ServerConfig", "ShardingConfig", "TimeoutsConfig",
    "load_config",
    "parse_config", "parse_duration",
]


LEADER_JITTER_FACTOR = 1.2
"""client-go's leaderelection.JitterFactor: acquire retries wait retry_period * [1, 2.2)."""


# --------------------------------------------------------------------------- durations

_DURATION_HELP = "a number of seconds or a duration string like '500ms', '10s', '5m', '1m30s'"
_GO_UNITS = frozenset({"ns", "us", "µs", "μs", "ms", "s", "m", "h"})
_DURATION_CHARS = re.compile(r"[+-]?[\d.a-zµμ]+")


def _seconds(value: object) -> float:
    """Seconds from a number of seconds or a Go-style duration string; Invalid otherwise.

    durationpy does the parsing; it also knows d, w, mm and y and skips what lies between two
    parts, which Go's time.ParseDuration refuses, so those are refused first. Its resolution is
    a microsecond (it returns a datetime.timedelta)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"must be {_DURATION_HELP}, got {describe(value)}")
    if not isinstance(value, str):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            units = set(re.findall(r"[a-zµμ]+", text))
            if not _DURATION_CHARS.fullmatch(text) or not units <= _GO_UNITS:
                raise durationpy.DurationError(text)
            seconds = durationpy.from_str(text).total_seconds()
        except (ValueError, OverflowError):  # DurationError is a ValueError
            raise Invalid(f"must be {_DURATION_HELP}, got {describe(value)}") from None
    if not math.isfinite(seconds):
        raise Invalid(f"must be a finite duration, got {describe(value)}")
    return seconds


def parse_duration(value: object, key: str) -> float:
    """Seconds from a number of seconds or a Go-style duration string; ConfigError otherwise."""
    try:
        return _seconds(value)
    except Invalid as exc:
        raise ConfigError(key, exc.message) from None


# --------------------------------------------------------------------------- value types

Number = Annotated[StrictFloat, AllowInfNan(False)]  # an int is taken too, as a float
Seconds = Annotated[float, BeforeValidator(_seconds), Words(unit="s")]
Fraction = Annotated[Number, Field(ge=0.0, le=1.0)]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]
Label = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
    Words("DNS-1123 label (lowercase letters, digits and '-')"),
]
Subdomain = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=253,
                      pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
    Words("DNS-1123 subdomain (lowercase letters, digits, '-' and '.')"),
]


def _path(value: str) -> str:
    if len(value) > 4096 or "\0" in value:
        raise Invalid(f"must be a path of at most 4096 characters without NUL, got {value!r}")
    return value


Path = Annotated[StrictStr, AfterValidator(_path), Words("path (a string, empty for none)")]


def _list_of(what: str) -> BeforeValidator:
    def check(value: object) -> object:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"must be a list of {what}, got {describe(value)}")
        return value
    return BeforeValidator(check)


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    for i, name in enumerate(names):
        if name in names[:i]:
            raise Invalid(f"duplicate namespace {name!r}", at=(i,))
    return names


Namespaces = Annotated[tuple[Label, ...], _list_of("namespace names"),
                       AfterValidator(_distinct)]
NamespacePattern = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$"),
    Words("namespace name or pattern (lowercase letters, digits, '-' and '*' for any)"),
]
KeyPattern = Annotated[
    StrictStr,
    StringConstraints(
        min_length=1, max_length=317,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
                r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
                r"|[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?)$"),
    Words("label or annotation key, or a DNS subdomain followed by '/' for every key with that "
          "prefix or a subdomain of it (a key without a prefix holds no '.')"),
]
KeyPatterns = Annotated[tuple[KeyPattern, ...], _list_of("label or annotation keys or prefixes")]
DEFAULT_RESERVED_KEYS = (
    "app.kubernetes.io/", "istio.io/", "linkerd.io/", "kuma.io/", "openservicemesh.io/",
    "dapr.io/", "cilium.io/", "hashicorp.com/", "amazonaws.com/", "azure.workload.identity/",
    "opentelemetry.io/", "datadoghq.com/",
)
"""Label and annotation prefixes an AppTask may not set by default: the recommended labels
Services of other workloads select on, and what service meshes, secret and identity agents and
instrumentation inject from (sidecar.istio.io/inject, vault.hashicorp.com/agent-inject, ...)."""


class _Section(BaseModel):
    """A mapping of the YAML: frozen (hashable), unknown keys refused, YAML keys the camelCase of
    the fields (Python code may construct by field name); null (all keys commented out) gives
    the defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                              validate_by_name=True, validate_by_alias=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data


# --------------------------------------------------------------------------- sections


class ResyncConfig(_Section):
    """Scheduled resync: every cached AppTask is re-enqueued each `period` (+/- jitter)."""

    period: Seconds = Field(300.0, ge=1.0)
    jitter: Fraction = 0.1


class BackoffConfig(_Section):
    """Per-key retry delay: min(cap, base * factor**failures), shortened by up to `jitter`;
    transient failures are retried without a status write for `degraded_after`."""

    base: Seconds = Field(0.5, gt=0.0)
    factor: Number = Field(2.0, ge=1.0)
    cap: Seconds = Field(300.0, gt=0.0)
    jitter: Fraction = 0.1
    degraded_after: Seconds = Field(30.0, ge=0.0)

    @model_validator(mode="after")
    def _cap_at_least_base(self) -> BackoffConfig:
        if self.cap < self.base:
            raise Invalid(f"must be >= {{section}}.base ({self.base:g}s), got {self.cap:g}s",
                          at=("cap",))
        return self


class RateLimitConfig(_Section):
    """Token bucket shared by all API writes."""

    qps: Number = Field(20.0, gt=0.0)
    burst: StrictInt = Field(50, ge=1)


class TimeoutsConfig(_Section):
    """Client-side request timeout and server-side watch timeout (also the watches' liveness
    check: see watcher.py)."""

    request: Seconds = Field(30.0, gt=0.0)
    watch: Seconds = Field(30.0, ge=1.0)


class ClientConfig(_Section):
    """The API client: which transport carries its requests (`builtin`: its own keep-alive
    HTTP/1.1 client, which speaks to no proxy, so that through a proxy urllib3 carries them
    anyway; `urllib3`: urllib3, with or without a proxy). See docs/client.md."""

    transport: Literal["builtin", "urllib3"] = "builtin"


class ApplyConfig(_Section):
    """Server-side apply options."""

    force: StrictBool = True
    adopt_existing: StrictBool = False


class FightsConfig(_Section):
    """Detection of and backoff from field-ownership fights with other managers."""

    threshold: StrictInt = Field(3, ge=2)
    window: Seconds = Field(60.0, gt=0.0)
    backoff_base: Seconds = Field(5.0, gt=0.0)
    backoff_cap: Seconds = Field(600.0, gt=0.0)

    @model_validator(mode="after")
    def _cap_at_least_base(self) -> FightsConfig:
        if self.backoff_cap < self.backoff_base:
            raise Invalid(f"must be >= {{section}}.backoffBase ({self.backoff_base:g}s), "
                          f"got {self.backoff_cap:g}s", at=("backoffCap",))
        return self


class LeaderElectionConfig(_Section):
    """Lease-based leader election (client-go semantics)."""

    enabled: StrictBool = True
    namespace: Label = "ssa-controller-system"
    lease_name: Subdomain = "ssa-controller"
    lease_duration: Seconds = Field(15.0, gt=0.0)
    renew_deadline: Seconds = Field(10.0, gt=0.0)
    retry_period: Seconds = Field(2.0, gt=0.0)

    @model_validator(mode="after")
    def _ordered_like_client_go(self) -> LeaderElectionConfig:
        """client-go's NewLeaderElector checks: leaseDuration > renewDeadline > 1.2 * retryPeriod
        (also when disabled)."""
        if self.lease_duration <= self.renew_deadline:
            raise Invalid(f"must be > {{section}}.renewDeadline ({self.renew_deadline:g}s), "
                          f"got {self.lease_duration:g}s", at=("leaseDuration",))
        min_renew = LEADER_JITTER_FACTOR * self.retry_period
        if self.renew_deadline <= min_renew:
            raise Invalid(f"must be > {LEADER_JITTER_FACTOR:g} x {{section}}.retryPeriod "
                          f"({min_renew:g}s), got {self.renew_deadline:g}s",
                          at=("renewDeadline",))
        return self


class ShardingConfig(_Section):
    """Sharding: every replica reconciles the AppTasks assigned to it, the replica that holds
    the leader Lease assigns them (docs/scaling-out.md). Shard Leases live beside the leader
    Lease, with its timings."""

    enabled: StrictBool = False


Host = Annotated[StrictStr, StringConstraints(max_length=253)]


class ServerConfig(_Section):
    """HTTP endpoints; a port of 0 disables that server. Each listens on its own host, or on
    `bind_address` when that is empty (`metrics_listen`, `health_listen`).

    With `secure_metrics` (the default, as kubebuilder v4 scaffolds it) /metrics is served over
    HTTPS and each scrape is authenticated by a TokenReview (for one of
    `metrics_token_audiences`, if any) and authorized by a SubjectAccessReview; the certificate
    is `metrics_cert_dir`/tls.crt and tls.key, or a self-signed one generated at start when
    that is empty.
    """

    bind_address: Annotated[StrictStr, StringConstraints(min_length=1, max_length=253)] = "0.0.0.0"
    metrics_host: Host = ""
    metrics_port: Port = 8080
    health_host: Host = ""
    health_port: Port = 8081
    secure_metrics: StrictBool = True
    metrics_cert_dir: Path = ""
    metrics_token_audiences: Annotated[
        tuple[Annotated[StrictStr, StringConstraints(min_length=1, max_length=1024)], ...],
        _list_of("token audiences")] = ()

    @property
    def metrics_listen(self) -> str:
        """The address /metrics listens on."""
        return self.metrics_host or self.bind_address

    @property
    def health_listen(self) -> str:
        """The address the probes listen on."""
        return self.health_host or self.bind_address

    @model_validator(mode="after")
    def _tls_settings_need_secure_metrics(self) -> ServerConfig:
        for key, value in (("metricsCertDir", self.metrics_cert_dir),
                           ("metricsTokenAudiences", self.metrics_token_audiences)):
            if value and not self.secure_metrics:
                raise Invalid(f"is only used with {{section}}.secureMetrics: true, got "
                              f"{value!r} with false", at=(key,))
        return self


class PodTemplateConfig(_Section):
    """What the controller renders into, and accepts for, an AppTask's pod template.

    `restricted`: the Pod Security Standard "restricted" settings (no service-account token,
    non-root, no privilege escalation, every capability dropped, the runtime's seccomp profile).
    `reserved_keys` / `allowed_keys`: label and annotation keys ("prefix/" for a prefix and its
    subdomains, else a whole key) an AppTask may not set / the only ones it may set (empty: any
    not reserved); kubernetes.io/, k8s.io/ (and their subdomains but app.kubernetes.io/, of
    which app.kubernetes.io/managed-by) and the controller's own prefix are always reserved.
    """

    restricted: StrictBool = True
    reserved_keys: KeyPatterns = DEFAULT_RESERVED_KEYS
    allowed_keys: KeyPatterns = ()


Capability = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_]*$"),
    Words("Linux capability (NET_BIND_SERVICE, or CAP_NET_BIND_SERVICE)"),
]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


class AdmissionConfig(_Section):
    """What an AppTask may ask for where that turns into privilege: its pods are made by the
    controller's ServiceAccount, not by whoever created the AppTask. A spec asking for more is
    Invalid (InvalidSpec naming the field and the rule) and nothing is applied.

    `allow_privileged` / `allow_privilege_escalation` / `allow_run_as_root`: whether a spec may
    set securityContext.privileged: true / allowPrivilegeEscalation: true / runAsNonRoot: false
    or runAsUser: 0 (of the container or the pod). `allowed_capabilities`: the capabilities
    securityContext.capabilities.add may name (empty: none). `service_account_names`: the only
    serviceAccountNames a spec may name (empty: any of its namespace). `service_types`: the
    spec.service types a spec may ask for.
    """

    allow_privileged: StrictBool = False
    allow_privilege_escalation: StrictBool = False
    allow_run_as_root: StrictBool = False
    allowed_capabilities: Annotated[tuple[Capability, ...], _list_of("capabilities")] = ()
    service_account_names: Annotated[tuple[Subdomain, ...],
                                     _list_of("service account names")] = ()
    service_types: Annotated[tuple[ServiceType, ...], _list_of("Service types")] = (
        "ClusterIP", "NodePort", "LoadBalancer")


class EventsConfig(_Section):
    """Per-AppTask token bucket for Kubernetes Events."""

    qps: Number = Field(0.1, gt=0.0)
    burst: StrictInt = Field(10, ge=1)


class LoggingConfig(_Section):
    """Log level (debug|info|warning|error) and format (text|json)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    """The whole controller configuration; `parse_config({})` gives the defaults."""

    field_manager: Annotated[
        StrictStr, StringConstraints(min_length=1, max_length=128)
    ] = "ssa-controller"
    namespaces: Namespaces = ()
    ignored_namespaces: Annotated[tuple[NamespacePattern, ...],
                                  _list_of("namespace names or patterns")] = ("kube-*",)
    dry_run: StrictBool = False
    show_values: StrictBool = False
    workers: StrictInt = Field(2, ge=1, le=64)
    resync: ResyncConfig = ResyncConfig()
    backoff: BackoffConfig = BackoffConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    client: ClientConfig = ClientConfig()
    apply: ApplyConfig = ApplyConfig()
    fights: FightsConfig = FightsConfig()
    leader_election: LeaderElectionConfig = LeaderElectionConfig()
    sharding: ShardingConfig = ShardingConfig()
    server: ServerConfig = ServerConfig()
    pod_template: PodTemplateConfig = PodTemplateConfig()
    admission: AdmissionConfig = AdmissionConfig()
    events: EventsConfig = EventsConfig()
    logging: LoggingConfig = LoggingConfig()
    shutdown_grace_period: Seconds = Field(30.0, ge=0.0)

    @model_validator(mode="after")
    def _sharding_needs_a_leader(self) -> Config:
        if not self.sharding.enabled:
            return self
        if not self.leader_election.enabled:
            raise Invalid("needs leaderElection.enabled: true (the leader assigns the AppTasks "
                          "to the shards), got false", at=("sharding", "enabled"))
        name = self.leader_election.lease_name
        if len(name) > 63:
            raise Invalid("needs a leaderElection.leaseName of at most 63 characters (it is the "
                          f"label value naming the ring of the shard Leases), got {len(name)}",
                          at=("sharding", "enabled"))
        return self

    def with_overrides(self, changes: Mapping[str, Any]) -> Config:
        """A copy with `changes` (YAML-shaped: camelCase keys, a section's keys replaced one by
        one) over this configuration, re-validated: command-line flags over the file."""
        return parse_config(merged(self.to_dict(), changes))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a YAML-shaped mapping (camelCase keys, durations in seconds)."""
        return self.model_dump(by_alias=True, mode="json")


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` over `base`, mappings merged key by key, anything else (lists too) replaced;
    neither is modified. Also how a spec's fields lie over the podTemplate defaults."""
    result = dict(base)
    for key, value in changes.items():
        inner = base.get(key)
        both = isinstance(value, Mapping) and isinstance(inner, Mapping)
        result[key] = merged(inner, value) if both else value  # type: ignore[arg-type]
    return result


# --------------------------------------------------------------------------- public functions


def parse_config(data: Mapping[str, Any] | None) -> Config:
    """Validate a parsed YAML document (None or {} gives the defaults) into a Config."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(None, f"the top-level document must be a mapping, got {describe(data)}")
    try:
        return Config.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise from_validation_error(exc, Config) from None


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
    root, data = read_yaml(text, source)
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise exc.at(source, locate(root, exc.key)) from None
