"""The `harness` command line: the parser and the dispatch, built from the command table
(harness.commands); one user-error type is caught here, printed as one line.

Kept light at start-up: no torch, transformers, quark, numpy, aiohttp or lm-eval import on this path.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from harness import __version__
from harness.commands import BY_NAME, COMMANDS
from harness.errors import (
    EXIT_CODES_HELP,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    HarnessError,
    report_internal_error,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Accuracy and memory regression gate for SGLang quantized MoE serving.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a prefix is never taken for another flag (`--suite` for `--suites-dir`)
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        gates: dict[str, Any] = {"epilog": EXIT_CODES_HELP, "formatter_class": argparse.RawDescriptionHelpFormatter}
        command.arguments(commands.add_parser(command.name, help=command.help, description=command.description,
                                              allow_abbrev=False, **(gates if command.exit_codes else {})))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every way out is an exit code of EXIT_CODES_HELP: exit 1 means a regression and nothing else."""
    from harness import interrupts, secrets

    secrets.register_environment()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = secrets.RedactingStream(stdout), secrets.RedactingStream(stderr)
    try:
        with interrupts.installed():
            return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)  # --help exits 0, a usage error 2 (argparse's SystemExit)
    try:
        return BY_NAME[args.command].run(args)
    except HarnessError as error:
        for line in str(error).splitlines() or [""]:  # several problems of one file: one line each
            print(f"harness: error: {line}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        print(f"harness: interrupted{f' ({interrupt})' if str(interrupt) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - a bug in harness: never exit 1, the regression code
        report_internal_error(error)
        return EXIT_INTERNAL


__all__ = ["build_parser", "main"]
