"""`harness merge RUN_DIR...`: shard runs merged into one run, compared and reported as one (harness.pipeline)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command, add_dirs


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--run-id", help="name of the merged reports/<run-id> (default: UTC time + -merged)")
    add_dirs(parser, "suites", "baselines", "reports")


def run(args: argparse.Namespace) -> int:
    from harness import pipeline

    return pipeline.merge(args.runs, run_id=args.run_id, suites_dir=args.suites_dir,
                          baselines_dir=args.baselines_dir, reports_dir=args.reports_dir)


COMMAND = Command("merge", "merge shard runs into one run, then compare and report", arguments, run,
                  exit_codes=True)
