"""docs/api.md, the AppTask API reference, names every field of the CRD's spec and status and
every admission setting: a field added to the schema without a line in the reference fails
here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ssa_controller.settings.config import AdmissionConfig

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
REFERENCE = (ROOT / "docs" / "api.md").read_text()


def documented(text: str) -> set[str]:
    """The names a reference documents: the `code` of its table rows' first cells, and any
    `spec.NAME` it refers to (a field whose reference is elsewhere)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            names.update(re.findall(r"`([^`]+)`", line.split(" | ")[0]))
    names.update(re.findall(r"`spec\.(\w+)`", text))
    return names


@pytest.mark.parametrize("part", ["spec", "status"])
def test_the_reference_names_every_field(part: str) -> None:
    assert sorted(set(SCHEMA[part]["properties"]) - documented(REFERENCE)) == []


def test_the_reference_names_every_admission_setting() -> None:
    settings = {field.alias or name for name, field in AdmissionConfig.model_fields.items()}
    assert sorted(settings - documented(REFERENCE)) == []


def test_a_field_only_in_prose_is_not_documented() -> None:
    text = "| field | x |\n| --- | --- |\n| `image`, `args` | `replicas` |\nthe `paused` field\n"
    assert documented(text + "see `spec.service`") == {"image", "args", "service"}
