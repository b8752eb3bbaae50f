"""How configuration problems are reported: one line naming the file, the line and column, the
dotted key and the problem.

pydantic validates the models in config.py; this module words its errors as a person reads a
config ("must be between 1 and 64, got 0", "unknown key (did you mean 'cap'?)"), reads the YAML
(rejecting duplicate keys) and finds the line and column of a dotted key in it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


class ConfigError(Exception):
    """An invalid configuration; `key` is the dotted YAML path, or None for file-level problems.

    Errors from load_config() also carry the file and, when known, the 1-based line and column
    of the offending key or YAML token; str() is then one line in the compiler style
    `FILE:LINE:COLUMN: invalid config key 'backoff.cap': must be ...`.
    """

    def __init__(self, key: str | None, message: str, *, source: str | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message
        self.source = source
        self.line = line
        self.column = column

    def at(self, source: str, mark: Any = None) -> ConfigError:
        """This error located in file `source` at a yaml Mark (0-based line and column), if any."""
        return ConfigError(self.key, self.message, source=source,
                           line=None if mark is None else mark.line + 1,
                           column=None if mark is None else mark.column + 1)

    def __str__(self) -> str:
        what = (f"invalid config: {self.message}" if self.key is None
                else f"invalid config key '{self.key}': {self.message}")
        if self.source is None:
            return what
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.column}"
        return f"{where}: {what}"


class Invalid(ValueError):
    """Raised by the models' own validators with a finished message. `at` extends the failing
    location (("cap",) from a section's cross-field rule, (2,) for a list item), and "{section}"
    in the message stands for the dotted key of the mapping where the rule was checked."""

    def __init__(self, message: str, at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.at = at


@dataclass(frozen=True)
class Words:
    """Annotated metadata for the messages: what a string must be, the unit shown after numbers."""

    what: str = "string"
    unit: str = ""


def describe(value: object) -> str:
    """How a YAML value is described in error messages, e.g. "boolean (true)"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"integer ({value})"
    if isinstance(value, float):
        return f"number ({value:g})"
    if isinstance(value, str):
        return f"string ({value!r})"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


_UNKNOWN = ("extra_forbidden", "invalid_key")  # a key the model does not have; a non-string key


def _first(errors: list[ErrorDetails]) -> ErrorDetails:
    """The error to report: depth-first in declaration order (pydantic's order), but in each
    mapping its unknown keys before anything inside it, as a reader checks keys first."""
    seen: dict[tuple[Any, ...], int] = {}
    for i, error in enumerate(errors):
        for depth in range(1, len(error["loc"]) + 1):
            seen.setdefault(error["loc"][:depth], i)

    def rank(error: ErrorDetails) -> list[tuple[int, int]]:
        loc = error["loc"]
        return [(0, 0) if error["type"] in _UNKNOWN and depth == len(loc)
                else (1, seen[loc[:depth]])
                for depth in range(1, len(loc) + 1)]

    return min(errors, key=rank)


def _target(
    model: type[BaseModel], loc: tuple[str | int, ...]
) -> tuple[type[BaseModel], Any, list[Any]]:
    """The model holding the value at `loc`, the value's type and its Annotated metadata."""
    holder: type[BaseModel] = model
    annotation: Any = model
    meta: list[Any] = []
    for part in loc:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            holder = annotation
            field = next((f for f in annotation.model_fields.values() if f.alias == part), None)
            if field is None:
                return holder, None, []
            annotation, meta = field.annotation, list(field.metadata)
        elif get_origin(annotation) is tuple:  # an item of a list: tuple[Annotated[str, ...], ...]
            item = get_args(annotation)[0]
            annotation, *meta = get_args(item) if get_origin(item) is Annotated else (item,)
        else:
            return holder, None, []
    return holder, annotation, meta


_EXPECTED = {"int_type": "an integer", "bool_type": "a boolean (true or false)",
             "float_type": "a number", "finite_number": "a number", "model_type": "a mapping",
             "dict_type": "a mapping"}
_OPERATORS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
              "less_than_equal": ("<=", "le")}


def _message(error: ErrorDetails, annotation: Any, meta: list[Any]) -> str:
    """A pydantic error about one value, worded with the value's type and constraints."""
    problem, value = error["type"], error["input"]
    words = next((m for m in meta if isinstance(m, Words)), Words())
    bounds = {name: getattr(m, name)
              for m in meta for name in ("ge", "le", "min_length", "max_length")
              if getattr(m, name, None) is not None}

    def show(number: Any) -> str:
        return f"{number:g}{words.unit}"

    if problem in _OPERATORS:
        if "ge" in bounds and "le" in bounds:
            return (f"must be between {show(bounds['ge'])} and {show(bounds['le'])}, "
                    f"got {show(value)}")
        operator, name = _OPERATORS[problem]
        return f"must be {operator} {show(error.get('ctx', {})[name])}, got {show(value)}"
    if problem in ("string_too_short", "string_too_long"):
        non_empty = "non-empty " if bounds.get("min_length") else ""
        return (f"must be a {non_empty}{words.what} of at most {bounds['max_length']} "
                f"characters, got {value!r}")
    if problem == "string_pattern_mismatch":
        return f"must be a {words.what}, got {value!r}"
    if problem == "literal_error":
        return f"must be one of {', '.join(get_args(annotation))}; got {describe(value)}"
    expected = f"a {words.what}" if problem == "string_type" else _EXPECTED.get(problem)
    if expected:
        return f"must be {expected}, got {describe(value)}"
    return f"{error['msg']}, got {describe(value)}"


def from_validation_error(exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """The first of pydantic's errors (see _first) as a ConfigError naming the dotted key."""
    error = _first(exc.errors(include_url=False))
    loc = tuple(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, Invalid):
        message = cause.message.replace("{section}", _dotted(loc))
        return ConfigError(_dotted(loc + cause.at), message)
    holder, annotation, meta = _target(model, loc)
    if error["type"] in _UNKNOWN:
        name = str(loc[-1])
        allowed = [field.alias or key for key, field in holder.model_fields.items()]
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        prefix = _dotted(loc[:-1])
        return ConfigError(f"{prefix}.{name}" if prefix else name,
                           f"unknown key{hint}; allowed keys: {', '.join(allowed)}")
    return ConfigError(_dotted(loc), _message(error, annotation, meta))


# --------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" merges may be overridden by explicit keys
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader rejects unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> ConfigError:
    """A YAML syntax error as one ConfigError line at the problem's line and column."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = _one_line(exc.problem or "")
        if exc.context:
            problem = f"{_one_line(exc.context)}: {problem}"
        return ConfigError(None, f"invalid YAML: {problem}").at(source, mark)
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        before = text[:exc.position]
        line, column = before.count("\n"), exc.position - (before.rfind("\n") + 1)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return ConfigError(None, f"invalid YAML: character #x{char:02x} is not allowed",
                           source=source, line=line + 1, column=column + 1)
    return ConfigError(None, f"invalid YAML: {_one_line(str(exc))}", source=source)


def read_yaml(text: str, source: str) -> tuple[yaml.Node, Any]:
    """The composed node tree (for locate) and the data of the one YAML document in `text`;
    ConfigError for invalid YAML, duplicate keys, or no document at all."""
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source) from None
    if root is None:
        raise ConfigError(None, "the file holds no YAML document (it is empty or all comments); "
                          "write {} for all defaults", source=source)
    return root, data


_KEY_PART = re.compile(r"\[(\d+)\]")


def locate(node: yaml.Node, key: str | None) -> Any:
    """The yaml Mark of the dotted `key` ("backoff.cap", "namespaces[1]") in the composed
    document: of its key in the mapping (or its list item); of the deepest part present when the
    key itself is not written (a cross-field check against a default); the document's when None."""
    mark = node.start_mark
    rest = key or ""
    while rest:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
                if name is not None and (rest == name or rest.startswith((name + ".", name + "["))):
                    mark, node, rest = key_node.start_mark, value_node, rest[len(name):]
                    break
            else:
                return mark
        elif isinstance(node, yaml.SequenceNode) and (index := _KEY_PART.match(rest)):
            position = int(index.group(1))
            if position >= len(node.value):
                return mark
            node = node.value[position]
            mark, rest = node.start_mark, rest[index.end():]
        else:
            return mark
        rest = rest.removeprefix(".")
    return mark
