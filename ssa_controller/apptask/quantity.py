"""Kubernetes resource quantities: their value, and the value the API server stores. Pure.

A string is held to the API server's grammar: a decimal number, then one suffix at most, either a
binary (Ki ... Ei) or decimal (n, u, m, k, M, G, T, P, E) one or an integer exponent (e3, E-3;
"E" alone is exa, not an exponent). Its value is computed as `kubernetes.utils.parse_quantity`
computes it, which takes more than the server does ("1K", "1 Gi", "NaN", "1_000") and whose
import would load the whole `kubernetes` package into the controller.
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal, DecimalException

_GRAMMAR = re.compile(r"([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?")
_POWERS = {"n": -3, "u": -2, "m": -1, "k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
"""A suffix's power of 1000 (decimal) or, followed by "i", of 1024 (binary)."""
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
    found = _GRAMMAR.fullmatch(text)
    if not found:
        return None
    number, suffix = found.groups()
    try:
        if not suffix or suffix[-1].isdigit():  # no suffix, or an exponent
            return Decimal(text)
        base = 1024 if suffix.endswith("i") else 1000
        return Decimal(number) * base ** Decimal(_POWERS[suffix[0]])
    except DecimalException:
        return None


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
