"""`harness publish [DIR ...] --out SITE`: a static, offline HTML site of the runs' history: a page per suite
with plots, a page per run."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command, add_dirs
from harness.commands.history import add_history_arguments, load_history


def arguments(parser: argparse.ArgumentParser) -> None:
    add_history_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="the site's directory (new, or an earlier site)")
    parser.add_argument("--title", default="harness", help="the site's title")
    parser.add_argument("--log-runs", type=int, default=14, metavar="N",
                        help="copy the server logs of the newest N runs into the site (default: 14)")
    add_dirs(parser, "baselines")


def run(args: argparse.Namespace) -> int:
    from harness.errors import EXIT_OK
    from harness.report.site import publish

    history = load_history(args)
    site = publish(history, args.out, baselines_dir=args.baselines_dir, window=args.window, title=args.title,
                   log_runs=args.log_runs)
    print(f"wrote {site.root}/index.html: {len(site.pages)} page(s) over {len(history.runs)} run(s)")
    return EXIT_OK


COMMAND = Command("publish", "write a static HTML site of the runs' history (offline)", arguments, run)
