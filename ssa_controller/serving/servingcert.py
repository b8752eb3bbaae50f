"""The metrics server's TLS: a mounted certificate, reloaded when it changes, or a self-signed one.

As controller-runtime's secure metrics do: a folder holding `tls.crt` and `tls.key` (a mounted
TLS Secret, cert-manager's for one) is served and watched, so a renewed certificate is picked up
by the next connection without a restart; without one, a self-signed certificate is generated
at start (Prometheus then scrapes with `insecureSkipVerify`, the traffic still encrypted).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CERT_FILE, KEY_FILE = "tls.crt", "tls.key"
SELF_SIGNED_VALIDITY = datetime.timedelta(days=365)
CLOCK_SKEW = datetime.timedelta(hours=1)
"""A self-signed certificate is valid from an hour ago, for clients whose clock is behind."""

ContextSource = Callable[[], ssl.SSLContext]
"""Gives the SSLContext for the next connection."""


def server_context(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]
                   ) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving the PEM certificate chain and key in these files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def self_signed_pem(hosts: Sequence[str], now: datetime.datetime) -> tuple[bytes, bytes]:
    """(certificate, private key) in PEM: ECDSA P-256, valid for `hosts` (names or IPs)."""
    # Imported here: only this needs cryptography, and its import would cost every start.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ssa-controller@{hosts[0]}")])
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + SELF_SIGNED_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def self_signed_context() -> ContextSource:
    """A context serving a new self-signed certificate for this host and loopback."""
    hosts = [socket.gethostname() or "localhost", "localhost", "127.0.0.1", "::1"]
    cert_pem, key_pem = self_signed_pem(list(dict.fromkeys(hosts)),
                                        datetime.datetime.now(datetime.UTC))
    # ssl loads a chain only from files: write them to a private folder, load, delete.
    with tempfile.TemporaryDirectory(prefix="ssa-controller-tls-") as folder:
        cert_file, key_file = Path(folder, CERT_FILE), Path(folder, KEY_FILE)
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        context = server_context(cert_file, key_file)
    log.info("metrics: serving a self-signed certificate (no server.metricsCertDir)")
    return lambda: context


class MountedCertificate:
    """`folder`/tls.crt and tls.key, reloaded when either file changes (a Secret update swaps
    them). Loading fails at construction; a later broken update keeps the last good pair."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self._cert, self._key = Path(folder, CERT_FILE), Path(folder, KEY_FILE)
        self._lock = threading.Lock()
        self._seen = self._stamp()
        self._context = server_context(self._cert, self._key)
        log.info("metrics: serving the certificate in %s", os.fspath(folder))

    def _stamp(self) -> tuple[int, int, int, int]:
        cert, key = self._cert.stat(), self._key.stat()
        return cert.st_mtime_ns, cert.st_ino, key.st_mtime_ns, key.st_ino

    def __call__(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = self._stamp()
                if stamp != self._seen:
                    self._seen = stamp  # a broken pair is tried once, not on every connection
                    self._context = server_context(self._cert, self._key)
                    log.info("metrics: reloaded the certificate in %s", self._cert.parent)
            except (OSError, ssl.SSLError) as exc:
                log.warning("metrics: cannot reload the certificate in %s, keeping the "
                            "previous one: %s", self._cert.parent, exc)
            return self._context


def context_source(cert_dir: str) -> ContextSource:
    """The mounted certificate in `cert_dir`, or a self-signed one when it is empty."""
    return MountedCertificate(cert_dir) if cert_dir else self_signed_context()
