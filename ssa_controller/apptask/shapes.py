"""Shapes of spec fields, as a structural OpenAPI schema states them. Pure, no I/O.

A shape checks a value the way the CRD's schema (manifests/crd.yaml) does, and returns what is
rendered: the value, nulls dropped and defaults filled in as the API server's pruning and
defaulting would. render() checks every field it copies into an apply body with its shape, so a
spec that the schema would refuse (handed over by an older CRD, or none) is InvalidSpec naming
the field, never a crash or a body the drift comparison cannot read (a keyed list item without
its key). `openapi()` states the shape as the CRD's schema must: tests/unit/test_fields.py
holds the two to each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import quantity

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
OPAQUE_DEPTH = 16
"""How deeply a pass-through value (affinity) may nest: deeper than any Kubernetes type it
stands for, shallow enough for recursive walks."""


class InvalidSpec(ValueError):
    """The AppTask's spec cannot be rendered; retrying cannot fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}" if field else message)
        self.field = field


def expect(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise InvalidSpec(field, message)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Shape:
    """A field's type and bounds."""

    default: Any = None
    """What an omitted field is rendered as (the CRD's default), None for nothing."""

    def check(self, value: Any, field: str) -> Any:
        """The value to render for `value` at `field` (not None); raises InvalidSpec."""
        raise NotImplementedError

    def openapi(self) -> dict[str, Any]:
        """The structural schema the CRD states for this field (descriptions left out)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Shape):
    max_length: int
    min_length: int = 0
    enum: tuple[str, ...] = ()
    default: str | None = None

    def check(self, value: Any, field: str) -> str:
        expect(isinstance(value, str), field, "must be a string")
        expect(self.min_length <= len(value) <= self.max_length, field,
               f"must be {self.min_length} to {self.max_length} characters long")
        expect(not self.enum or value in self.enum, field,
               f"must be one of {', '.join(self.enum)}")
        return str(value)

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class Int(Shape):
    minimum: int = INT32[0]
    maximum: int = INT32[1]

    def check(self, value: Any, field: str) -> int:
        expect(is_int(value) and self.minimum <= value <= self.maximum, field,
               f"must be an integer in {self.minimum}..{self.maximum}")
        return int(value)

    def openapi(self) -> dict[str, Any]:
        wide = self.minimum < INT32[0] or self.maximum > INT32[1]
        schema: dict[str, Any] = {"type": "integer", "format": "int64" if wide else "int32"}
        # kube-apiserver v1.20 reads a bound as a float: 2^63-1 overflows to -2^63
        if self.minimum != INT64[0]:
            schema["minimum"] = self.minimum
        if self.maximum != INT64[1]:
            schema["maximum"] = self.maximum
        return schema


@dataclass(frozen=True)
class Bool(Shape):
    only: bool | None = None
    """The one value admitted (a field that exists only to be refused otherwise)."""

    def check(self, value: Any, field: str) -> bool:
        expect(isinstance(value, bool), field, "must be true or false")
        expect(self.only is None or value is self.only, field,
               f"may only be {str(self.only).lower()}")
        return bool(value)

    def openapi(self) -> dict[str, Any]:
        return {"type": "boolean"} if self.only is None else {"type": "boolean",
                                                              "enum": [self.only]}


@dataclass(frozen=True)
class IntOrStr(Shape):
    """A port (number or name) or a count (number or percentage)."""

    max_length: int
    minimum: int = 0
    maximum: int = INT32[1]

    def check(self, value: Any, field: str) -> int | str:
        if isinstance(value, str):
            expect(1 <= len(value) <= self.max_length, field,
                   f"must be 1 to {self.max_length} characters long")
            return value
        return Int(self.minimum, self.maximum).check(value, field)

    def openapi(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True, "minimum": self.minimum,
                "maximum": self.maximum, "minLength": 1, "maxLength": self.max_length}


QUANTITY_PATTERN = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")


def is_quantity(amount: Any) -> bool:
    """Whether the API server reads `amount` as a quantity (as JSON, it reads an integer beyond
    64 bits as a float)."""
    in_range = isinstance(amount, str) or is_int(amount) and INT64[0] <= amount <= INT64[1]
    return in_range and quantity.parse(amount) is not None


@dataclass(frozen=True)
class Quantity(Shape):
    def check(self, value: Any, field: str) -> int | str:
        expect(is_quantity(value), field, f"{value!r} is not a quantity")
        return value  # type: ignore[no-any-return]

    def openapi(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                "maxLength": 64, "x-kubernetes-int-or-string": True}


@dataclass(frozen=True)
class Obj(Shape):
    fields: Mapping[str, Shape]
    required: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    """Fields of which exactly one is set (a union: a volume's source, a probe's handler)."""

    def check(self, value: Any, field: str) -> dict[str, Any]:
        expect(isinstance(value, Mapping), field, "must be an object")
        unknown = sorted(str(k) for k in value if k not in self.fields)
        expect(not unknown, field, f"unknown fields {unknown}")
        expect(not self.one_of or sum(value.get(k) is not None for k in self.one_of) == 1,
               field, f"must set exactly one of {', '.join(self.one_of)}")
        rendered: dict[str, Any] = {}
        for name, shape in self.fields.items():
            item = value.get(name)
            if item is None:
                item = shape.default
            if item is None:
                expect(name not in self.required, f"{field}.{name}", "is required")
            else:
                rendered[name] = shape.check(item, f"{field}.{name}")
        return rendered

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "properties": {
            name: shape.openapi() for name, shape in self.fields.items()}}
        if self.required:
            schema["required"] = list(self.required)
        if self.one_of:
            schema["oneOf"] = [{"required": [name]} for name in self.one_of]
        return schema


@dataclass(frozen=True)
class List(Shape):
    items: Shape
    max_items: int
    keys: tuple[str, ...] = ()
    """The list-map keys: items are unique by them, and merged by them."""
    min_items: int = 0

    def check(self, value: Any, field: str) -> list[Any]:
        expect(isinstance(value, list), field, "must be a list")
        expect(self.min_items <= len(value) <= self.max_items, field,
               f"must have {self.min_items} to {self.max_items} items")
        rendered = [self.items.check(item, f"{field}[{i}]") for i, item in enumerate(value)]
        seen: set[tuple[Any, ...]] = set()
        for i, item in enumerate(rendered):
            key = tuple(item.get(k) for k in self.keys)
            expect(not self.keys or key not in seen, f"{field}[{i}]",
                   "duplicate " + ", ".join(f"{k} {v!r}" for k, v in zip(self.keys, key,
                                                                         strict=True)))
            seen.add(key)
        return rendered

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "maxItems": self.max_items,
                                  "items": self.items.openapi()}
        if self.min_items:
            schema["minItems"] = self.min_items
        if self.keys:
            schema.update({"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": list(self.keys)})
        return schema


@dataclass(frozen=True)
class Map(Shape):
    values: Shape
    max_properties: int

    def check(self, value: Any, field: str) -> dict[str, Any]:
        expect(isinstance(value, Mapping) and all(isinstance(k, str) for k in value), field,
               "must be a map")
        expect(len(value) <= self.max_properties, field,
               f"must have at most {self.max_properties} entries")
        return {k: self.values.check(v, f"{field}.{k}") for k, v in value.items()}

    def openapi(self) -> dict[str, Any]:
        return {"type": "object", "maxProperties": self.max_properties,
                "additionalProperties": self.values.openapi()}


@dataclass(frozen=True)
class Opaque(Shape):
    """An object passed through as it is (x-kubernetes-preserve-unknown-fields): the API server
    validates it when the Deployment is applied. Checked only to be JSON the apply can send."""

    def check(self, value: Any, field: str) -> dict[str, Any]:
        expect(isinstance(value, Mapping), field, "must be an object")
        pending: list[tuple[Any, str, int]] = [(value, field, 0)]
        while pending:
            item, where, depth = pending.pop()
            expect(depth <= OPAQUE_DEPTH, where, f"nests deeper than {OPAQUE_DEPTH} levels")
            if isinstance(item, Mapping):
                expect(all(isinstance(k, str) for k in item), where, "must have string keys")
                pending.extend((v, f"{where}.{k}", depth + 1) for k, v in item.items())
            elif isinstance(item, list):
                pending.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
            else:
                expect(item is None or isinstance(item, (str, bool))
                       or is_int(item) and INT64[0] <= item <= INT64[1]
                       or isinstance(item, float) and math.isfinite(item), where,
                       "must be a JSON value")
        return dict(value)

    def openapi(self) -> dict[str, Any]:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
