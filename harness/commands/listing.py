"""`harness list --suite S [--cell GLOB]`: the suite's cells, with the fix and PR each one guards and its evals."""

from __future__ import annotations

import argparse

from harness.commands.base import SUITE_HELP, Command, add_dirs


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, help=SUITE_HELP)
    parser.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    add_dirs(parser, "suites")


def run(args: argparse.Namespace) -> int:
    from harness.errors import EXIT_OK
    from harness.matrix import expand, select
    from harness.suite import find_suite, load_suite

    suite = load_suite(find_suite(args.suite, args.suites_dir))
    for cell in select(expand(suite), args.cell):
        print(cell.describe())
    return EXIT_OK


COMMAND = Command("list", "print the cells of a suite", arguments, run)
