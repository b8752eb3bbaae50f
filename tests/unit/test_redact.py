"""Unit tests for ssa_controller.apptask.redact and client.kube.without_userinfo: secrets kept
out of output unless asked for."""

from __future__ import annotations

from typing import Any

import pytest

from ssa_controller.apptask import redact
from ssa_controller.client import credentials as kube

ENV = "/spec/template/spec/containers/0/env"


@pytest.mark.parametrize(("op", "shown"), [
    ({"op": "replace", "path": f"{ENV}/2/value", "value": "s3cr3t"},
     {"op": "replace", "path": f"{ENV}/2/value", "value": redact.MASK}),
    ({"op": "add", "path": f"{ENV}/2", "value": {"name": "TOKEN", "value": "s3cr3t"}},
     {"op": "add", "path": f"{ENV}/2", "value": {"name": "TOKEN", "value": redact.MASK}}),
    ({"op": "add", "path": ENV, "value": [{"name": "A", "value": "1"}, {"name": "B"}]},
     {"op": "add", "path": ENV, "value": [{"name": "A", "value": redact.MASK}, {"name": "B"}]}),
    ({"op": "add", "path": "/spec", "value": {"template": {"spec": {"containers": [
        {"name": "app", "image": "x", "env": [{"name": "T", "value": "s3cr3t"}]}]}}}},
     {"op": "add", "path": "/spec", "value": {"template": {"spec": {"containers": [
         {"name": "app", "image": "x", "env": [{"name": "T", "value": redact.MASK}]}]}}}}),
    ({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x:2"},
     {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x:2"}),
    ({"op": "replace", "path": "/metadata/labels/value", "value": "v"},
     {"op": "replace", "path": "/metadata/labels/value", "value": "v"}),
    ({"op": "remove", "path": f"{ENV}/1"}, {"op": "remove", "path": f"{ENV}/1"}),
])
def test_env_values_are_masked_in_a_patch(op: dict[str, Any], shown: dict[str, Any]) -> None:
    assert redact.env_values([op]) == [shown]


def test_masking_leaves_the_patch_itself_alone() -> None:
    patch = [{"op": "add", "path": f"{ENV}/0", "value": {"name": "T", "value": "s3cr3t"}}]
    redact.env_values(patch)
    assert patch[0]["value"]["value"] == "s3cr3t"


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pw@proxy:3128", "http://proxy:3128"),
    ("https://token@proxy.example:8443/path", "https://proxy.example:8443/path"),
    ("http://proxy:3128", "http://proxy:3128"),
    ("socks5://a:b@[::1]:1080", "socks5://[::1]:1080"),
    ("proxy:3128", "proxy:3128"),
])
def test_url_credentials_are_stripped(url: str, shown: str) -> None:
    assert kube.without_userinfo(url) == shown
