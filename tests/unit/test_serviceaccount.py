"""Unit tests for ssa_controller.client.serviceaccount: a pod's credentials from its environment and
service-account files (Kube.in_cluster over HTTPS: test_kube.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssa_controller.client import serviceaccount
from ssa_controller.client.serviceaccount import ServiceAccountError, Token

POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("token-1\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_server_ca_and_token_come_from_the_pod(directory: Path) -> None:
    pod = serviceaccount.load(directory, POD)
    assert pod.server == "https://10.96.0.1:443"
    assert pod.ca_file == str(directory / "ca.crt")
    assert pod.authorization() == "Bearer token-1"


def test_an_ipv6_service_host_is_bracketed(directory: Path) -> None:
    pod = serviceaccount.load(directory, {**POD, "KUBERNETES_SERVICE_HOST": "fd00::1"})
    assert pod.server == "https://[fd00::1]:443"


@pytest.mark.parametrize("unset", ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"])
def test_a_missing_service_address_is_named(directory: Path, unset: str) -> None:
    with pytest.raises(ServiceAccountError, match="KUBERNETES_SERVICE_HOST.*PORT"):
        serviceaccount.load(directory, {**POD, unset: ""})


@pytest.mark.parametrize(("name", "content", "message"), [
    ("token", None, r"service-account token .*token: No such file"),
    ("token", " \n", r"service-account token .*token is empty"),
    ("ca.crt", None, r"service-account CA bundle .*ca.crt: No such file"),
    ("ca.crt", "", r"service-account CA bundle .*ca.crt is empty"),
])
def test_a_missing_or_empty_file_is_named(directory: Path, name: str, content: str | None,
                                          message: str) -> None:
    if content is None:
        (directory / name).unlink()
    else:
        (directory / name).write_text(content)
    with pytest.raises(ServiceAccountError, match=message):
        serviceaccount.load(directory, POD)


def test_the_token_is_read_again_once_the_period_passed(directory: Path) -> None:
    clock = Clock()
    token = Token(directory / "token", period=60, clock=clock)
    (directory / "token").write_text("token-2")
    clock.now = 59.9
    assert token() == "Bearer token-1"
    clock.now = 60
    assert token() == "Bearer token-2"
    (directory / "token").write_text("token-3")
    clock.now = 119.9
    assert token() == "Bearer token-2"  # the period counts from the last read


def test_a_failed_reread_keeps_the_last_token_and_retries_at_the_next_request(
        directory: Path) -> None:
    clock = Clock()
    token = Token(directory / "token", period=60, clock=clock)
    (directory / "token").unlink()
    clock.now = 61
    assert token() == "Bearer token-1"
    (directory / "token").write_text("token-2")
    clock.now = 61.1
    assert token() == "Bearer token-2"
