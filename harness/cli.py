"""The `harness` command line: the parser and the dispatch, built from the command table
(harness.commands); one user-error type is caught here, printed as one line.

Kept light at start-up: no torch, transformers, quark, numpy, aiohttp or lm-eval import on this path.
"""

from __future__ import annotations

import argparse
import difflib
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
    print_error,
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
        raw: dict[str, Any] = {"formatter_class": argparse.RawDescriptionHelpFormatter}
        # A description written with its own line breaks (harness bisect's exit codes) is printed as written.
        layout: dict[str, Any] = ({"epilog": EXIT_CODES_HELP, **raw} if command.exit_codes
                                  else raw if "\n" in (command.description or "") else {})
        command.arguments(commands.add_parser(command.name, help=command.help, description=command.description,
                                              allow_abbrev=False, **layout))
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """parse_args, except that an unknown argument is reported by the (sub)command it was given to, with that
    command's usage and the closest of its options: `harness run --dry-runn` says "did you mean --dry-run?"
    (argparse itself hands a subcommand's unknown arguments to the top-level parser)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = _innermost(parser, args)
        options = [option for action in command._actions for option in action.option_strings]
        hints = {argument: close[0] for argument in unknown if argument.startswith("-")
                 for close in [difflib.get_close_matches(argument.split("=", 1)[0], options, n=1, cutoff=0.6)]
                 if close}
        if len(unknown) == 1 and hints:
            suggestion = f"; did you mean {hints[unknown[0]]}?"
        else:
            suggestion = "".join(f"; {argument}: did you mean {option}?" for argument, option in hints.items())
        command.error(f"unrecognized arguments: {' '.join(unknown)}{suggestion}")
    return args


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command (and action: `baseline update`) that the arguments chose."""
    while True:
        chooser = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if chooser is None:
            return parser
        chosen = getattr(args, chooser.dest, None)
        if chosen not in chooser.choices:
            return parser
        parser = chooser.choices[chosen]


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
    args = parse(build_parser(), argv)  # --help exits 0, a usage error 2 (argparse's SystemExit)
    try:
        return BY_NAME[args.command].run(args)
    except HarnessError as error:
        print_error(error)
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
