"""Credentials from a kubeconfig, read through the `kubernetes` package (imported only here and
only when a kubeconfig is read: a pod's service account is read without it, see
serviceaccount).

The package's public API does the work wherever it has one: the loaded
`kubernetes.client.Configuration` gives the server, the TLS files and settings, the proxy, and,
before every request, the Authorization header (`get_api_key_with_prefix`, which runs the
loader's refresh hook: an exec plugin or auth provider whose token expired is run again).
It has none for an exec plugin's client certificate, which client-go renews when it expires and
the package's loader never does: `_load` is the one function coupled to the loader's internals
(its `expiry`, `cert_file`, `key_file` and whether it holds a `token`), checked against the
versions in CHECKED_VERSIONS (tests/unit/test_kubeconfig.py fails on any other).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .credentials import (
    ClientCertificate,
    Credentials,
    CredentialsError,
    authorization_header,
    proxy_for,
)

CHECKED_VERSIONS = ((37, 0), (38, 0))
"""The `kubernetes` package versions, from (included) to (excluded) as (major, minor), whose
loader internals `_load` was checked against."""
DEFAULT_PATH = "~/.kube/config"


class _Authorization:
    """The Authorization header of a loaded Configuration, brought up to date before every
    request (see the module docstring). Thread-safe: the refresh hook writes into the
    Configuration."""

    def __init__(self, cfg: Any) -> None:
        self._cfg = cfg
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            credential = self._cfg.get_api_key_with_prefix("BearerToken")
        return authorization_header(credential)


def _load(paths: str, context: str | None
          ) -> tuple[Any, str, Callable[[], ClientCertificate] | None]:
    """The loaded Configuration of `context` (None: the current one) in the kubeconfig files
    `paths`, the context's name, and, for an exec plugin's client certificate, what renews it
    once it expires (as client-go does; the loader renews only tokens).

    The one function that reaches past the `kubernetes` package's public API (see
    CHECKED_VERSIONS): `load_kube_config` builds the same loader but hides it, and the
    certificate's expiry is known only to the loader."""
    from kubernetes.client import Configuration
    from kubernetes.config.kube_config import (
        EXPIRY_SKEW_PREVENTION_DELAY,
        KubeConfigLoader,
        KubeConfigMerger,
    )
    merged = KubeConfigMerger(paths)
    if merged.config is None:
        raise CredentialsError(f"no kubeconfig found at {paths}")
    loader = KubeConfigLoader(config_dict=merged.config, active_context=context,
                              config_base_path=None, config_persister=merged.save_changes)
    cfg = Configuration()
    loader.load_and_set(cfg)
    state = vars(loader)
    if state.get("expiry") is None or "token" in state:
        return cfg, loader.current_context["name"], None
    lock = threading.Lock()

    def certificate() -> ClientCertificate:
        with lock:
            if loader.expiry - EXPIRY_SKEW_PREVENTION_DELAY <= datetime.now(UTC):
                loader.load_and_set(Configuration())
            return loader.cert_file, loader.key_file
    return cfg, loader.current_context["name"], certificate


def load(path: str | None = None, context: str | None = None) -> Credentials:
    """The credentials of a kubeconfig context (`path` None: $KUBECONFIG, else ~/.kube/config;
    `context` None: its current context). CredentialsError names what cannot be loaded or
    honoured."""
    from kubernetes.config.config_exception import ConfigException
    paths = path or os.environ.get("KUBECONFIG") or DEFAULT_PATH
    try:
        cfg, name, certificate = _load(paths, context)
    except ConfigException as exc:
        raise CredentialsError(f"kubeconfig {paths}: {exc}") from exc
    cfg.proxy = cfg.proxy  # fixed: else every refresh re-reads the environment (190 µs, not 10)
    return Credentials(
        cfg.host, f"kubeconfig {paths}, context {name}", _Authorization(cfg),
        ca_file=cfg.ssl_ca_cert, cert_file=cfg.cert_file, key_file=cfg.key_file,
        client_certificate=certificate, verify=cfg.verify_ssl,
        tls_server_name=cfg.tls_server_name, proxy_url=proxy_for(cfg.host, cfg.proxy,
                                                                 cfg.no_proxy))

