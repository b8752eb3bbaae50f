"""The metrics server's certificate: a self-signed one for this host, or a mounted pair that is
reloaded when it changes and kept when a broken update arrives."""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from pathlib import Path

import pytest
from cryptography import x509

from ssa_controller.serving.servingcert import (
    CERT_FILE,
    KEY_FILE,
    MountedCertificate,
    context_source,
    self_signed_context,
    self_signed_pem,
)

NOW = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)


def write_pair(folder: Path, hosts: list[str], bump: int = 0) -> x509.Certificate:
    cert_pem, key_pem = self_signed_pem(hosts, NOW)
    (folder / CERT_FILE).write_bytes(cert_pem)
    (folder / KEY_FILE).write_bytes(key_pem)
    stamp = 1_700_000_000 + bump
    for name in (CERT_FILE, KEY_FILE):  # distinct mtimes even within one clock tick
        os.utime(folder / name, (stamp, stamp))
    return x509.load_pem_x509_certificate(cert_pem)


def test_self_signed_certificate_names_the_hosts_and_serves_only() -> None:
    cert = x509.load_pem_x509_certificate(
        self_signed_pem(["pod-1", "localhost", "127.0.0.1", "::1"], NOW)[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pod-1", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1")]
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc == NOW - datetime.timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=365)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.ExtendedKeyUsageOID.SERVER_AUTH]


def test_self_signed_context_loads_and_leaves_no_files(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    source = self_signed_context()
    assert source() is source()
    assert list(tmp_path.iterdir()) == []


def test_mounted_certificate_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    write_pair(tmp_path, ["first"])
    mounted = MountedCertificate(tmp_path)
    first = mounted()
    assert mounted() is first  # unchanged files: the same context
    write_pair(tmp_path, ["second"], bump=1)
    second = mounted()
    assert second is not first
    assert mounted() is second


def test_broken_update_keeps_the_last_good_certificate(tmp_path: Path) -> None:
    write_pair(tmp_path, ["good"])
    mounted = MountedCertificate(tmp_path)
    good = mounted()
    (tmp_path / KEY_FILE).write_bytes(b"not a key")
    assert mounted() is good
    (tmp_path / CERT_FILE).unlink()
    assert mounted() is good
    write_pair(tmp_path, ["renewed"], bump=2)
    assert mounted() is not good


def test_missing_mounted_certificate_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        context_source(str(tmp_path))
