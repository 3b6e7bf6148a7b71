"""`harness bisect`: the first engine build of a series whose cell regressed, by the gate's own verdicts.
The search lives in harness.bisect; this module only turns flags into a BisectRequest."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.commands.base import SUITE_HELP, Command, add_dirs

DESCRIPTION = """\
Bisect a regression of one cell across an ordered series of engine builds: git revisions of the engine's
source tree (--engine-src: each revision checked out into a worktree put first on the server's PYTHONPATH), or
one Python interpreter or virtualenv per line of a file (--builds). The good end is measured first; every
later build is gated against its measured figures (paired per question). Builds that cannot be measured are
skipped, as git bisect skip does. The metric that regressed most significantly at the bad end drives the
search (--metric overrides). The bisect directory keeps every step: --resume DIR goes on after Ctrl-C.

exit codes:
  0    the first bad build was found
  2    the bad end does not reproduce (nothing to bisect), the good end is not good, or bad input
  3    infrastructure made it impossible: an end could not be measured, or skipped builds hide the first bad one
  4    internal error: a bug in harness
  130  interrupted: the finished steps are kept (harness bisect --resume DIR)
  (1 is never a bisect's: it stays the exit code of a gated run that regressed)
"""


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", help=SUITE_HELP)
    parser.add_argument("--cell", help="the cell to bisect (its id, or a glob matching exactly one)")
    parser.add_argument("--good", metavar="G", help="the good end: a git revision (--engine-src) or a builds line "
                                                    "(its text or 1-based position; default the first)")
    parser.add_argument("--bad", metavar="B", help="the bad end (as --good; with --builds default the last)")
    builds = parser.add_mutually_exclusive_group()
    builds.add_argument("--engine-src", type=Path, metavar="DIR", help="a git checkout of the engine's source")
    builds.add_argument("--builds", type=Path, metavar="FILE",
                        help="one Python interpreter or virtualenv per line, oldest first")
    parser.add_argument("--src-subdir", default=".", metavar="PATH",
                        help="the directory inside --engine-src that goes on PYTHONPATH (SGLang's repository: "
                             "python; default: its root)")
    parser.add_argument("--metric", help="the metric that drives the search (default: the one that regressed "
                                         "most significantly at the bad end)")
    parser.add_argument("--python", help="with --engine-src: the Python that runs the engine (default: the "
                                         "suite's, else this one)")
    parser.add_argument("--run-id", help="name of the bisect directory under --bisects-dir (default: UTC time and "
                                         "suite)")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="go on with the bisect kept in DIR")
    parser.add_argument("--api-key", default=os.environ.get("HARNESS_API_KEY"),
                        help="start servers with --api-key K and send it (default: $HARNESS_API_KEY)")
    add_dirs(parser, "suites", "baselines", "bisects")


def run(args: argparse.Namespace) -> int:
    from harness.bisect import BisectRequest, bisect

    return bisect(BisectRequest(
        suite=args.suite, cell=args.cell, good=args.good, bad=args.bad, engine_src=args.engine_src,
        src_subdir=args.src_subdir, builds_file=args.builds, metric=args.metric, python=args.python,
        run_id=args.run_id, resume=args.resume, api_key=args.api_key, suites_dir=args.suites_dir,
        baselines_dir=args.baselines_dir, bisects_dir=args.bisects_dir))


COMMAND = Command("bisect", "find the engine build that brought a regression (git revisions or Pythons)",
                  arguments, run, description=DESCRIPTION)
