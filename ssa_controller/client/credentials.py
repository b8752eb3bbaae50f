"""Where a client's server and credentials come from: the `Credentials` a Kube is made with, a
pod's service account (in-cluster, read by serviceaccount), the proxy to reach the server
through, and the Authorization header a credential makes. A kubeconfig is read by kubeconfig.

The proxy is chosen as the kubernetes package chooses it (kubeconfig `proxy-url`, else
`$HTTPS_PROXY` and co., unless `$NO_PROXY` matches: its `should_bypass_proxies`, loaded only when
a proxy is named), in a pod too; only http and https proxies are supported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

from . import serviceaccount

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_DIR_ENV = "SSA_SERVICE_ACCOUNT_DIR"
"""Names another directory holding `token` and `ca.crt` (tests run the controller "as a pod")."""
AUTH_SCHEMES = {"bearer": "Bearer", "basic": "Basic"}
PROXY_SCHEMES = ("http", "https")

ClientCertificate = tuple[str | None, str | None]
"""(certificate file, key file) for TLS client authentication."""


class CredentialsError(Exception):
    """Credentials that cannot be loaded, or a kubeconfig field this client cannot honour."""


@dataclass(frozen=True)
class Credentials:
    """An API server and how to trust it and authenticate to it."""

    server: str
    origin: str
    """Where they came from, for messages: `kubeconfig PATH, context NAME`, `the in-cluster
    service account (DIR)`."""
    authorization: Callable[[], str | None]
    """The Authorization header, asked for before every request (credentials rotate)."""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_certificate: Callable[[], ClientCertificate] | None = None
    """Asked for before every request instead of cert_file and key_file, when the client
    certificate may change (an exec plugin's, renewed when it expires)."""
    verify: bool = True
    tls_server_name: str | None = None
    proxy_url: str | None = None


def authorization_header(credential: str | None) -> str | None:
    """The Authorization header for a credential as the kubernetes loader stores it: "Bearer T"
    (kubeconfig token, exec plugin, auth provider) or "Basic B64" (kubeconfig username/password),
    the scheme in any case; a credential without a scheme is a bearer token."""
    if not credential or not credential.strip():
        return None
    scheme, _, value = credential.strip().partition(" ")
    canonical = AUTH_SCHEMES.get(scheme.lower())
    if canonical is None or not value.strip():
        return f"Bearer {credential.strip()}"
    return f"{canonical} {value.strip()}"


def proxy_for(server: str, proxy: str | None, no_proxy: str | None) -> str | None:
    """The proxy to reach `server` through, as the kubernetes package decides it (`proxy`,
    unless `no_proxy` matches the server), or None."""
    if not proxy:
        return None
    from kubernetes.client.rest import should_bypass_proxies
    if should_bypass_proxies(server, no_proxy or ""):
        return None
    scheme = urlsplit(proxy).scheme if "://" in proxy else None
    if scheme not in PROXY_SCHEMES:
        raise CredentialsError(
            "kubeconfig proxy-url (or proxy environment variable) "
            f"{without_userinfo(proxy)!r}: scheme {scheme!r} is not supported; use an http or "
            "https proxy")
    return proxy


def without_userinfo(text: str) -> str:
    """`text` without the user and password of a URL (http://user:pw@proxy:3128 ->
    http://proxy:3128)."""
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _environment_proxy(server: str) -> str | None:
    """The proxy the environment names for `server` ($HTTPS_PROXY, $ALL_PROXY; $NO_PROXY), as a
    kubernetes Configuration without a kubeconfig `proxy-url` takes it, or None."""
    proxies = getproxies()
    return proxy_for(server, proxies.get("https") or proxies.get("all"), proxies.get("no"))


def in_cluster() -> Credentials:
    """The credentials of the pod this process runs in: its service account's `token` and
    `ca.crt` from SERVICE_ACCOUNT_DIR (or $SSA_SERVICE_ACCOUNT_DIR), the API server from
    $KUBERNETES_SERVICE_HOST / _PORT (see serviceaccount; the token file is re-read at most
    once a minute: projected tokens rotate)."""
    directory = Path(os.environ.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)
    try:
        pod = serviceaccount.load(directory, os.environ)
    except serviceaccount.ServiceAccountError as exc:
        raise CredentialsError(f"in-cluster config ({directory}): {exc}") from exc
    return Credentials(pod.server, f"the in-cluster service account ({directory})",
                       pod.authorization, ca_file=pod.ca_file,
                       proxy_url=_environment_proxy(pod.server))
