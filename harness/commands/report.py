"""`harness report RUN`: the verdict table of a finished run, and its exit code (a CI step that reports a
regressed run fails as the run did)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path)


def run(args: argparse.Namespace) -> int:
    from harness.compare import Verdict, exit_code
    from harness.history import open_run
    from harness.report import render_console

    run_result = open_run(args.run)
    verdicts = [Verdict.from_dict(v) for v in run_result.verdicts]
    # The code the run recorded (4 when comparing failed); an older file without one: its verdicts'.
    code = run_result.exit_code if run_result.exit_code is not None else exit_code(verdicts)
    print(render_console(verdicts, code), end="")
    return code


COMMAND = Command("report", "print the verdict table of a finished run", arguments, run)
