"""`harness run`: a suite's cells (or one shard, or a run to resume) run, compared with baselines, reported.
The pipeline (harness.pipeline) does the whole run; this module only turns flags into a RunRequest."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.commands.base import ENGINE_VERSION_HELP, Command, add_dirs
from harness.kernels.selection import KERNELS

DURATIONS_HELP = ("past runs to estimate cell costs from (a reports/ directory); every shard must be given the same, "
                  "so that all runners split alike (default: cost from GPU counts alone)")


def arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite")
    what.add_argument("--resume", type=Path, metavar="RUN_DIR",
                      help="finish reports/<run>: skip the cells that finished, run the rest")
    parser.add_argument("--retry-failed", action="store_true",
                        help="with --resume: also re-run cells that failed for infrastructure reasons")
    parser.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    parser.add_argument("--shard", metavar="K/N", help="run shard K of N (cells balanced by estimated cost)")
    parser.add_argument("--durations-from", type=Path, metavar="DIR", help=DURATIONS_HELP)
    parser.add_argument("--gpus", help="device indices to pack cells onto, e.g. 0,1,2,3 (default: every GPU found)")
    parser.add_argument("--max-parallel", type=int, help="at most this many cells at once (default: as GPUs allow)")
    parser.add_argument("--share-gpus", type=int, default=1, metavar="N",
                        help="let N cells share each GPU (load checks of tiny checkpoints; the GPU memory sampler "
                             "and the release wait then see every cell on the device, so they are left out)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each cell's server argv and env; launch nothing")
    parser.add_argument("--run-id", help="name of reports/<run-id> (default: UTC time and suite)")
    parser.add_argument("--python", help="the Python that runs the engine (default: this one)")
    parser.add_argument("--api-key", default=os.environ.get("HARNESS_API_KEY"),
                        help="start servers with --api-key K and send it (default: $HARNESS_API_KEY)")
    parser.add_argument("--no-preflight", action="store_true",
                        help="launch cells without checking their checkpoints first (preflight runs by default)")
    parser.add_argument("--engine-version", metavar="V", help=ENGINE_VERSION_HELP)
    parser.add_argument("--kernels", choices=KERNELS,
                        help="the kernels every cell's quantized layers run on, over the suite's server.kernels: "
                             "aiter-reference serves SGLang's own MXFP4 code through harness's reference "
                             "implementations of the aiter calls it makes (GPUs without aiter); recorded per result")
    parser.add_argument("--force-reference-kernels", action="store_true",
                        help="use aiter-reference even on a ROCm host where aiter is installed (refused otherwise)")
    add_dirs(parser, "suites", "baselines", "reports")


def run(args: argparse.Namespace) -> int:
    from harness import pipeline

    return pipeline.run(pipeline.RunRequest(
        suite=args.suite, resume=args.resume, retry_failed=args.retry_failed, cells=args.cell, shard=args.shard,
        durations_from=args.durations_from, gpus=args.gpus, max_parallel=args.max_parallel,
        share_gpus=args.share_gpus, dry_run=args.dry_run, run_id=args.run_id, python=args.python,
        api_key=args.api_key, preflight=not args.no_preflight, engine_version=args.engine_version,
        kernels=args.kernels, force_reference_kernels=args.force_reference_kernels,
        suites_dir=args.suites_dir, baselines_dir=args.baselines_dir, reports_dir=args.reports_dir))


COMMAND = Command("run", "run a suite's cells, compare with baselines, write reports", arguments, run,
                  exit_codes=True)
