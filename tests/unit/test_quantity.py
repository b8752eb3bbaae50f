"""Unit tests for apptask.quantity (its stored values: test_desired_properties.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kubernetes.utils import parse_quantity

from ssa_controller.apptask import quantity


@pytest.mark.parametrize(("a", "b"), [
    ("1000m", "1"), ("0.5", "500m"), ("1e3", "1k"), ("1E3", "1000"), ("1Ki", "1024"),
    ("2M", "2000000"), ("1.5Gi", "1536Mi"), (2, "2"), ("100n", "0.1u"),
])
def test_equal_quantities_parse_to_the_same_value(a: str | int, b: str) -> None:
    assert quantity.parse(a) == quantity.parse(b)


def test_binary_suffixes_are_powers_of_two() -> None:
    assert quantity.parse("1Gi") == 1073741824


def test_different_quantities_differ() -> None:
    assert quantity.parse("1k") != quantity.parse("1Ki")


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "1K", "1kb", "Gi", "1 Gi", "--1",
                                  "NaN", "Infinity", "1_000", "1e3k", "1e1.5"])
def test_invalid_quantities_parse_to_none(text: str) -> None:
    assert quantity.parse(text) is None


def test_a_boolean_is_not_a_quantity() -> None:
    assert quantity.parse(True) is None


def test_parsing_is_exact() -> None:
    assert quantity.parse("100m") == Decimal("0.1")


@pytest.mark.parametrize("text", [
    f"{sign}{number}{suffix}" for sign in ("", "-")
    for number in ("1", "1.5", ".5", "123456789.000001")
    for suffix in ("", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi",
                   "Ei", "e3", "E3", "e-3", "E+2", "e0")])
def test_values_are_those_of_the_kubernetes_package(text: str) -> None:
    assert quantity.parse(text) == parse_quantity(text)
