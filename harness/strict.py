"""Strict readers for YAML/JSON documents: unknown keys and wrong types are errors.

Every reader takes a `Where` (file + key path) so that the error names both, e.g.
``suites/glm5.yaml: models[0].checkpoints.fp8: unknown key 'pth'; did you mean 'path'?``.
A typo must never silently disable a gate, so nothing here ignores a key.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from harness.errors import ConfigError, ConfigErrors

T = TypeVar("T")

# Bounds on what a document may expand to: a YAML alias "bomb" (each alias naming a list of the previous
# one) stays small as text and as shared Python objects, but anything that walks it (str(), json.dumps)
# grows without end; 50k levels of nesting exhaust the recursion limit of any recursive reader.
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 1_000_000
EXCERPT_WIDTH = 100  # characters of a line shown under a YAML syntax error


@dataclass(frozen=True)
class Where:
    """A position in a config document: the file and the key path inside it."""

    file: str
    path: str = ""

    def key(self, name: str | int) -> Where:
        if isinstance(name, int):
            return Where(self.file, f"{self.path}[{name}]")
        return Where(self.file, f"{self.path}.{name}" if self.path else str(name))

    def error(self, message: str) -> ConfigError:
        location = f"{self.file}: {self.path}" if self.path else self.file
        return ConfigError(f"{location}: {message}")


@dataclass
class Problems:
    """The independent problems of one document, collected so that one reading reports all of them: each
    part parsed through `check` that fails leaves its error here and a stand-in value behind."""

    errors: list[ConfigError] = field(default_factory=list)

    def check(self, parse: Callable[[], T], stand_in: T) -> T:
        try:
            return parse()
        except ConfigErrors as several:
            self.errors.extend(several.errors)
        except ConfigError as error:
            self.errors.append(error)
        return stand_in

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A "; did you mean 'x'?" suffix for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_choice(where: Where, what: str, value: object, choices: Iterable[str]) -> ConfigError:
    choices = sorted(str(c) for c in choices)
    return where.error(
        f"unknown {what} '{value}'{did_you_mean(str(value), choices)} (expected one of: {', '.join(choices)})"
    )



def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def mapping(value: Any, where: Where, *, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    """Return `value` as a dict after checking its keys against `allowed` and `required`."""
    if not isinstance(value, Mapping):
        raise where.error(f"expected a mapping, got {_type_name(value)}")
    allowed = list(allowed)
    for key in value:
        if key not in allowed:
            raise where.key(str(key)).error(
                f"unknown key '{key}'{did_you_mean(str(key), allowed)} (expected one of: {', '.join(sorted(allowed))})"
            )
    for key in required:
        if key not in value:
            raise where.error(f"missing required key '{key}'")
    return dict(value)


def string(value: Any, where: Where) -> str:
    if not isinstance(value, str) or not value:
        raise where.error(f"expected a non-empty string, got {_type_name(value)}")
    return value


def boolean(value: Any, where: Where) -> bool:
    if not isinstance(value, bool):
        raise where.error(f"expected true or false, got {_type_name(value)}")
    return value


def integer(value: Any, where: Where, *, minimum: int | None = None) -> int:
    # bool is an int subclass in Python; `tp: true` must not read as tp 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise where.error(f"expected an integer, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise where.error(f"expected an integer >= {minimum}, got {value}")
    return value


def number(value: Any, where: Where, *, minimum: float | None = None, maximum: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise where.error(f"expected a number, got {_type_name(value)}")
    if not math.isfinite(value):
        # NaN compares false with everything: a NaN baseline or tolerance would switch the gate off.
        raise where.error(f"expected a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise where.error(f"expected a number >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise where.error(f"expected a number <= {maximum}, got {value}")
    return float(value)


def sequence(value: Any, where: Where, *, non_empty: bool = False) -> list:
    if not isinstance(value, list):
        raise where.error(f"expected a list, got {_type_name(value)}")
    if non_empty and not value:
        raise where.error("expected a non-empty list")
    return value


def string_list(value: Any, where: Where) -> tuple[str, ...]:
    return tuple(string(item, where.key(i)) for i, item in enumerate(sequence(value, where)))


def string_map(value: Any, where: Where) -> dict[str, str]:
    """An environment-style mapping: string keys, scalar values rendered as strings."""
    if not isinstance(value, Mapping):
        raise where.error(f"expected a mapping, got {_type_name(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise where.error(f"keys must be non-empty strings, got {key!r}")
        if isinstance(item, bool):
            # YAML reads `1`/`true` as non-strings; an env var must be explicit text.
            raise where.key(key).error(f"expected a string (quote it, e.g. \"1\"), got {_type_name(item)}")
        if not isinstance(item, (str, int, float)):
            raise where.key(key).error(f"expected a string, got {_type_name(item)}")
        out[key] = str(item)
    return out


def choice(value: Any, where: Where, *, what: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    text = string(value, where)
    if text not in choices:
        raise unknown_choice(where, what, text, choices)
    return text


# --- bounded parsing --------------------------------------------------------------------------------------

class DocumentTooComplex(ValueError):
    """A document nested deeper or expanding to more nodes than any harness file needs."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses documents nested deeper than MAX_DEPTH or expanding (aliases followed)
    to more than MAX_EXPANDED_NODES nodes, before anything is constructed."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            if anchor in self.anchors:
                self._count(self._size(self.anchors[anchor]))
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise DocumentTooComplex(f"nested deeper than {MAX_DEPTH} levels")
        self._count(1)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _count(self, nodes: int) -> None:
        self._expanded += nodes
        if self._expanded > MAX_EXPANDED_NODES:
            raise DocumentTooComplex(f"expands to more than {MAX_EXPANDED_NODES} nodes (YAML aliases?)")

    def _size(self, node: yaml.Node) -> int:
        """Nodes under `node` with aliases expanded (the depth bound keeps this recursion short)."""
        key = id(node)
        if key not in self._sizes:
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            else:
                children = []
            self._sizes[key] = min(1 + sum(self._size(child) for child in children), MAX_EXPANDED_NODES + 1)
        return self._sizes[key]


def load_yaml(text: str) -> Any:
    """yaml.safe_load with bounded depth and alias expansion. Raises yaml.YAMLError or DocumentTooComplex."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise DocumentTooComplex("nested too deeply") from None
    finally:
        loader.dispose()


def yaml_error(file: str, error: yaml.YAMLError | DocumentTooComplex, text: str) -> ConfigError:
    """A YAML file that does not parse: `file:line:column: not valid YAML: <problem> (<context> at line L,
    column C)`, with the line itself and a caret under the column as the error's excerpt."""
    mark = getattr(error, "problem_mark", None)
    if not isinstance(error, yaml.MarkedYAMLError) or mark is None:
        return ConfigError(f"{file}: not valid YAML: {' '.join(str(error).split())}")
    problem = " ".join(str(error.problem or "syntax error").split())
    context, context_mark = error.context, error.context_mark
    if context and context_mark is not None:
        problem += f" ({' '.join(context.split())} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    lines = text.splitlines()
    source = lines[mark.line] if mark.line < len(lines) else ""  # past the last line: the end of the file
    column = mark.column
    if len(source) > EXCERPT_WIDTH:  # a very long line (a flow mapping on one line): the part around the column
        start = max(0, min(column - EXCERPT_WIDTH // 2, len(source) - EXCERPT_WIDTH))
        source, column = source[start:start + EXCERPT_WIDTH], column - start
    number = f"{mark.line + 1} | "
    excerpt = f"  {number}{source}\n  {' ' * len(number)}{' ' * column}^"
    return ConfigError(f"{file}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {problem}", excerpt=excerpt)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity (not JSON) and documents nested deeper than MAX_DEPTH.
    Raises ValueError (json.JSONDecodeError or DocumentTooComplex)."""
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise DocumentTooComplex("nested too deeply") from None
    check_depth(document)
    return document


def check_depth(document: Any, limit: int = MAX_DEPTH) -> None:
    """Raise DocumentTooComplex when containers nest deeper than `limit` (iterative: no recursion)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                raise DocumentTooComplex(f"nested deeper than {limit} levels")
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
