"""`harness plan --suite S --shards N`: the shards a suite splits into (`--format github`: a job matrix)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.commands.base import SUITE_HELP, Command, add_dirs, print_json
from harness.commands.run import DURATIONS_HELP


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, help=SUITE_HELP)
    parser.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--durations-from", type=Path, metavar="DIR", help=DURATIONS_HELP)
    parser.add_argument("--format", choices=("text", "json", "github"), default="text",
                        help="github: a one-line job matrix for $GITHUB_OUTPUT")
    add_dirs(parser, "suites", "baselines", "reports")


def run(args: argparse.Namespace) -> int:
    from harness import pipeline
    from harness.errors import EXIT_OK
    from harness.report.format import plural

    the_plan = pipeline.plan(args.suite, suites_dir=args.suites_dir, baselines_dir=args.baselines_dir,
                             cell_patterns=args.cell)
    shards = pipeline.shards(the_plan, args.shards, args.durations_from)
    if args.format == "github":
        # One line, for `echo "matrix=$(harness plan ...)" >> $GITHUB_OUTPUT` and fromJSON() in the workflow.
        include = [{"suite": the_plan.suite.name, "shard": s.label, "cells": len(s.cells),
                    "gpus": max((c.gpus for c in s.cells), default=0),
                    "estimated_gpu_hours": round(s.estimated_gpu_s / 3600, 2)} for s in shards if s.cells]
        print(json.dumps({"include": include}, separators=(",", ":")))
    elif args.format == "json":
        print_json([{"shard": s.label, "estimated_gpu_s": s.estimated_gpu_s, "cells": [c.id for c in s.cells]}
                    for s in shards])
    else:
        for s in shards:
            print(f"shard {s.label}: {plural(len(s.cells), 'cell')}, ~{s.estimated_gpu_s / 3600:.2f} GPU-hours")
            for cell in s.cells:
                print(f"  {cell.id}")
    return EXIT_OK


COMMAND = Command("plan", "split a suite's cells into shards for CI runners", arguments, run)
