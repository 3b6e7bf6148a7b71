"""Strict readers for YAML/JSON documents: unknown keys and wrong types are errors.

Every reader takes a `Where` (file + key path) so that the error names both, e.g.
``suites/glm5.yaml: models[0].checkpoints.fp8: unknown key 'pth'; did you mean 'path'?``.
A typo must never silently disable a gate, so nothing here ignores a key.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError


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
