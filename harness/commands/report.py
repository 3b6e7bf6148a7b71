"""`harness report RUN`: the verdict table of a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path)


def run(args: argparse.Namespace) -> int:
    from harness.compare import Verdict
    from harness.errors import EXIT_OK
    from harness.report import render_console
    from harness.results import load_run

    run_result = load_run(args.run)
    verdicts = [Verdict.from_dict(v) for v in run_result.verdicts]
    print(render_console(verdicts, run_result.exit_code), end="")
    return EXIT_OK


COMMAND = Command("report", "print the verdict table of a finished run", arguments, run)
