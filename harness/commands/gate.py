"""`harness gate [RUN_DIR ...] [--code N ...]`: several runs gated as one, exiting with the worst exit code by
the one ranking (harness.errors.EXIT_RANKING). The nightly of many suites (`make nightly`, the workflow's gate
job) ends with it, so that no shell keeps a copy of the ranking."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.base import Command


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="*", metavar="RUN_DIR",
                        help="a run directory: its recorded exit code; one that never concluded counts as 3")
    parser.add_argument("--code", type=int, action="append", default=[], metavar="N",
                        help="the exit code of a harness command that wrote no run to read (repeatable), "
                             "e.g. each `harness run` of a nightly, 130 for one that was interrupted")


def run(args: argparse.Namespace) -> int:
    from harness.errors import EXIT_MEANINGS, ConfigError, ranked_exit_code, worst_exit_code
    from harness.pipeline import recorded_exit_code

    if not args.runs and not args.code:
        raise ConfigError("gate: nothing to gate: name run directories or --code N (none would read as a pass)")
    inputs = [(str(run_dir), *recorded_exit_code(run_dir)) for run_dir in args.runs]
    inputs += [(f"--code {code}", code, "given") for code in args.code]
    for label, code, source in inputs:
        counted = ranked_exit_code(code)
        note = source if counted == code else f"{source}; not a harness exit code: counted as {counted}"
        print(f"{label}: {code} ({EXIT_MEANINGS.get(code, 'unknown')}; {note})", file=sys.stderr)
    worst = worst_exit_code(code for _, code, _ in inputs)
    print(f"gate: exit {worst} ({EXIT_MEANINGS[worst]}), the worst of {len(inputs)} "
          f"(4 > 130 > 1 > 3 > 2 > 0)")
    return worst


COMMAND = Command("gate", "exit with the worst exit code of several runs (4 > 130 > 1 > 3 > 2 > 0)", arguments,
                  run, exit_codes=True)
