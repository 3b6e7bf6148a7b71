"""What a command module exposes (asv's one `Command` per file), and what their parsers share.

A command is a module of harness.commands with a `COMMAND`: its name, its help, the arguments it adds to its
parser, and `run(args) -> exit code`. Modules import only light things at the top: building the parser
imports every command module, and the CLI's start-up must stay free of numpy, aiohttp, torch and the like.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUITE_HELP = "a suite's name in --suites-dir (glm5 reads suites/glm5.yaml) or the path of a suite file"
ENGINE_VERSION_HELP = ("the SGLang release whose loader preflight predicts, e.g. 0.5.17 (default: the engine's "
                       "version in the engine's Python; the newest known release when it has none)")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None
    exit_codes: bool = False  # its --help ends with the exit codes (commands that gate)


def finite_float(text: str) -> float:
    """argparse's float, refusing nan and inf (a NaN alpha or temperature would pass every comparison)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_dirs(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        parser.add_argument(f"--{name}-dir", type=Path, default=Path(name),
                            help=f"the {name}/ directory (default: ./{name})")


def existing_dir(path: Path, flag: str) -> Path:
    """A directory a command reads, which must exist: a mistyped one is named, never read as empty."""
    if not path.is_dir():
        from harness.errors import ConfigError

        raise ConfigError(f"{path}: no such directory ({flag})")
    return path


def action(parser: argparse.ArgumentParser, dest: str, name: str, summary: str) -> argparse.ArgumentParser:
    """A command's own action (`baseline update`, `data fetch`), with argparse's prefix matching off as on
    every parser of harness: `--suite` must never be taken for `--suites-dir`."""
    actions = getattr(parser, "_harness_actions", None)  # a command's second action joins its first
    if actions is None:
        actions = parser.add_subparsers(dest=dest, required=True, metavar="ACTION")
        parser._harness_actions = actions  # type: ignore[attr-defined]
    return actions.add_parser(name, help=summary, allow_abbrev=False)


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2))
