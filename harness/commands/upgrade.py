"""`harness upgrade FILE`: a result or baseline file rewritten at the current schema version."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path)


def run(args: argparse.Namespace) -> int:
    from harness import schema
    from harness.errors import EXIT_OK, ConfigError

    document = schema.read_document(args.path)
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind not in schema.CURRENT_VERSIONS:
        raise ConfigError(f"{args.path}: kind: not a harness file ({kind!r})")
    before = document.get("schema_version")
    upgraded = schema.check_version(document, args.path, kind, migrate=True)
    if upgraded.get("schema_version") == before:
        print(f"{args.path}: already at {kind} schema {before}")
        return EXIT_OK
    writer = schema.write_json if args.path.suffix == ".json" else schema.write_yaml
    writer(args.path, upgraded)
    print(f"{args.path}: {kind} schema {before} -> {upgraded['schema_version']}")
    return EXIT_OK


COMMAND = Command("upgrade", "rewrite a result or baseline file at the current schema", arguments, run)
