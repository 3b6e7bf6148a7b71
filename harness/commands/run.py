"""`harness run`: a suite's cells (or one shard, or a run to resume) run, compared with baselines, reported.
The pipeline (harness.pipeline) does the whole run; this module only turns flags into a RunRequest."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.commands.base import ENGINE_VERSION_HELP, SUITE_HELP, Command, add_dirs
from harness.kernels.selection import KERNELS

DURATIONS_HELP = ("past runs to estimate cell costs from (a reports/ directory); every shard must be given the same, "
                  "so that all runners split alike (default: cost from GPU counts alone)")


def arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite", help=f"the suite to run: {SUITE_HELP}")
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
    parser.add_argument("--sequential", action=argparse.BooleanOptionalAction, default=None,
                        help="stop each question eval once its accuracy verdict is decided (anytime-valid tests "
                             "against the baseline; docs/gate.md); default: the suite's gate.sequential")
    add_dirs(parser, "suites", "baselines", "reports")
    slurm = parser.add_argument_group(
        "Slurm", "--executor slurm: the suite's shards as one job array, each task on the GPUs Slurm gives it, then "
                 "a dependent job that merges and gates; harness waits and exits with the merged run's code. "
                 "--resume takes reports/<run>.slurm. Defaults: HARNESS_SLURM_PARTITION, _ACCOUNT, _TIME, "
                 "_GPUS_PER_NODE, then the suite's slurm: section (docs/operations.md)")
    slurm.add_argument("--executor", choices=("local", "slurm"), default="local",
                       help="local: this host (default); slurm: sbatch")
    slurm.add_argument("--shards", type=int, metavar="N", help="with --executor slurm: split into N array tasks")
    slurm.add_argument("--partition", help="sbatch --partition")
    slurm.add_argument("--account", help="sbatch --account")
    slurm.add_argument("--time", help="sbatch --time of each task, e.g. 8:00:00")
    slurm.add_argument("--gpus-per-node", type=int, metavar="G", help="each task's GPUs (--gres=gpu:G)")
    slurm.add_argument("--detach", action="store_true",
                       help="print the job ids and the command that gates later, and exit 0")


SLURM_ONLY = ("shards", "partition", "account", "time", "gpus_per_node", "detach")


def run(args: argparse.Namespace) -> int:
    from harness import pipeline
    from harness.errors import ConfigError

    request = _request(args)
    if args.executor == "slurm":
        from harness.slurm.executor import SlurmRun
        from harness.slurm.executor import run as run_on_slurm
        from harness.slurm.scripts import SlurmOptions

        suite = _suite_slurm_defaults(args)
        options = SlurmOptions.resolve({name: getattr(args, name) for name in ("partition", "account", "time",
                                                                               "gpus_per_node")}, suite=suite)
        if args.shards is not None and args.shards < 1:
            raise ConfigError(f"--shards {args.shards}: expected at least 1")
        return run_on_slurm(SlurmRun(request, options, shards=args.shards, detach=args.detach))
    given = [name for name in SLURM_ONLY if getattr(args, name) not in (None, False)]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')}: only with --executor slurm")
    return pipeline.run(request)


def _suite_slurm_defaults(args: argparse.Namespace) -> dict:
    """The suite's `slurm:` defaults (a resumed run's options are its record's)."""
    if not args.suite:
        return {}
    from harness.suite import find_suite, load_suite

    return load_suite(find_suite(args.suite, args.suites_dir)).slurm


def _request(args: argparse.Namespace):
    from harness import pipeline

    return pipeline.RunRequest(
        suite=args.suite, resume=args.resume, retry_failed=args.retry_failed, cells=args.cell, shard=args.shard,
        durations_from=args.durations_from, gpus=args.gpus, max_parallel=args.max_parallel,
        share_gpus=args.share_gpus, dry_run=args.dry_run, run_id=args.run_id, python=args.python,
        api_key=args.api_key, preflight=not args.no_preflight, engine_version=args.engine_version,
        sequential=args.sequential, kernels=args.kernels, force_reference_kernels=args.force_reference_kernels,
        suites_dir=args.suites_dir, baselines_dir=args.baselines_dir, reports_dir=args.reports_dir)


COMMAND = Command("run", "run a suite's cells, compare with baselines, write reports", arguments, run,
                  exit_codes=True)
