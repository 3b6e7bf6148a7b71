"""`harness memory LOG`: the memory report of any server log (e.g. a CI artifact), per TP rank and the max."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command, print_json


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logfile", type=Path)
    from harness.engine_specs import ENGINES

    # The engines whose log holds memory lines (EngineSpec.log_parser).
    readable = [name for name, spec in ENGINES.items() if spec.log_parser]
    parser.add_argument("--engine", choices=readable, default=readable[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from harness.engines import get_engine
    from harness.errors import EXIT_OK, ConfigError
    from harness.report.memory import render_memory

    try:
        lines = args.logfile.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise ConfigError(f"{args.logfile}: cannot read: {error.strerror}") from None
    report = get_engine(args.engine).parse_log(lines)
    if args.json:
        print_json(report.to_dict())
    else:
        print(render_memory(report), end="")
    return EXIT_OK


COMMAND = Command("memory", "print the memory report of an existing server log", arguments, run)
