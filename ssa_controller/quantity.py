"""Kubernetes resource quantities: their value, and the value the API server stores. Pure.

The value comes from `kubernetes.utils.parse_quantity`. That parser is more lenient than the
API server (it takes "1K", "1 Gi", "NaN", "1_000", an exponent followed by a suffix), so a string
is first held to the server's grammar: a decimal number, then one suffix at most, either a
binary (Ki ... Ei) or decimal (n, u, m, k, M, G, T, P, E) one or an integer exponent (e3, E-3;
"E" alone is exa, not an exponent).
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal

from kubernetes.utils import parse_quantity

_GRAMMAR = re.compile(r"[+-]?[0-9.]+([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?")
_MAX = Decimal(2**63 - 1)
_MILLI = Decimal("0.001")


def parse(value: str | int | float) -> Decimal | None:
    """The numeric value of a Kubernetes quantity ("500m", "1Gi", "1e3", 2), or None if it is
    not one (a boolean is not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    text = value.strip()
    if not _GRAMMAR.fullmatch(text):
        return None
    try:
        number: Decimal = parse_quantity(text)
    except ValueError:
        return None
    return number


def stored(value: str | int | float) -> Decimal | None:
    """The value the API server stores for a resource quantity, or None if invalid: parsing caps
    it at 2^63-1, and defaulting rounds every ResourceList value up to milli precision ("1n" is
    stored as "1m", "999Ei" as "9223372036854775807"). Comparing unrounded values would see a
    difference after every apply, and re-apply for ever."""
    number = parse(value)
    if number is None:
        return None
    number = max(-_MAX, min(_MAX, number))
    return number.quantize(_MILLI, rounding=ROUND_UP)
