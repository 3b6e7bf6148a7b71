"""`harness history [DIR ...]`: each cell's metrics across the runs under the roots, with the steps the gate's
own test finds in them (text, CSV or JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command, add_dirs


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """The roots and the window `history` and `publish` share."""
    parser.add_argument("roots", type=Path, nargs="*", metavar="DIR",
                        help="directories holding runs, at any depth (default: the reports directory)")
    parser.add_argument("--window", type=int, default=3,
                        help="runs on each side of a candidate step that the gate's test compares (default: 3)")
    add_dirs(parser, "suites", "reports")


def load_history(args: argparse.Namespace):
    from harness.errors import ConfigError
    from harness.history import History

    if args.window < 1:
        raise ConfigError(f"--window {args.window}: must be at least 1")
    return History.load(args.roots or [args.reports_dir], suites_dir=args.suites_dir, must_exist=True)


def arguments(parser: argparse.ArgumentParser) -> None:
    add_history_arguments(parser)
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text",
                        help="csv: one row per cell x metric x run; json: the series with their steps")
    parser.add_argument("--runs", action="store_true", help="text: also list every run of every series")
    parser.add_argument("--suite", action="append", help="only this suite's series (repeatable)")
    parser.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    parser.add_argument("--metric", action="append", help="glob on metric keys, e.g. 'memory.*' (repeatable)")


def run(args: argparse.Namespace) -> int:
    from harness.errors import EXIT_OK
    from harness.report import history as render
    from harness.steps import trends

    history = load_history(args)
    found = trends(history, suites=args.suite, cells=args.cell, metrics=args.metric, window=args.window)
    if args.format == "csv":
        print(render.render_csv(found), end="")
    elif args.format == "json":
        print(render.render_json(history, found), end="")
    else:
        print(render.render_text(history, found, every_run=args.runs), end="")
    return EXIT_OK


COMMAND = Command("history", "each cell's metrics across runs, with the steps found in them", arguments, run)
