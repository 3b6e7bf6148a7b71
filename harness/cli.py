"""The `harness` command line. One user-error type is caught here, printed as one line.

Kept light at start-up: no torch, transformers, quark or lm-eval import on this path.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.errors import (
    EXIT_CODES_HELP,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    HarnessError,
    report_internal_error,
)
from harness.evals.registry import fetchable, question_evals

ENGINE_VERSION_HELP = ("the SGLang release whose loader preflight predicts, e.g. 0.5.17 (default: the engine's "
                       "version in the engine's Python; the newest known release when it has none)")


def finite_float(text: str) -> float:
    """argparse's float, refusing nan and inf (a NaN alpha or temperature would pass every comparison)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _add_dirs(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        parser.add_argument(f"--{name}-dir", type=Path, default=Path(name),
                            help=f"the {name}/ directory (default: ./{name})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Accuracy and memory regression gate for SGLang quantized MoE serving.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="print the cells of a suite")
    listing.add_argument("--suite", required=True)
    listing.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    _add_dirs(listing, "suites")

    run = commands.add_parser("run", help="run a suite's cells, compare with baselines, write reports",
                              epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite")
    what.add_argument("--resume", type=Path, metavar="RUN_DIR",
                      help="finish reports/<run>: skip the cells that finished, run the rest")
    run.add_argument("--retry-failed", action="store_true",
                     help="with --resume: also re-run cells that failed for infrastructure reasons")
    run.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    run.add_argument("--shard", metavar="K/N", help="run shard K of N (cells balanced by estimated cost)")
    run.add_argument("--durations-from", type=Path, metavar="DIR", help="past runs to estimate cell costs from (a reports/ directory); every shard must be given the same, so that all runners split alike (default: cost from GPU counts alone)")
    run.add_argument("--gpus", help="device indices to pack cells onto, e.g. 0,1,2,3 (default: every GPU found)")
    run.add_argument("--max-parallel", type=int, help="at most this many cells at once (default: as GPUs allow)")
    run.add_argument("--share-gpus", type=int, default=1, metavar="N",
                     help="let N cells share each GPU (load checks of tiny checkpoints; the GPU memory sampler "
                          "and the release wait then see every cell on the device, so they are left out)")
    run.add_argument("--dry-run", action="store_true", help="print each cell's server argv and env; launch nothing")
    run.add_argument("--run-id", help="name of reports/<run-id> (default: UTC time and suite)")
    run.add_argument("--python", help="the Python that runs the engine (default: this one)")
    run.add_argument("--api-key", default=os.environ.get("HARNESS_API_KEY"),
                     help="start servers with --api-key K and send it (default: $HARNESS_API_KEY)")
    run.add_argument("--no-preflight", action="store_true",
                     help="launch cells without checking their checkpoints first (preflight runs by default)")
    run.add_argument("--engine-version", metavar="V", help=ENGINE_VERSION_HELP)
    _add_dirs(run, "suites", "baselines", "reports")

    planning = commands.add_parser("plan", help="split a suite's cells into shards for CI runners")
    planning.add_argument("--suite", required=True)
    planning.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    planning.add_argument("--shards", type=int, default=1)
    planning.add_argument("--durations-from", type=Path, metavar="DIR", help="past runs to estimate cell costs from (a reports/ directory); every shard must be given the same, so that all runners split alike (default: cost from GPU counts alone)")
    planning.add_argument("--format", choices=("text", "json", "github"), default="text",
                          help="github: a one-line job matrix for $GITHUB_OUTPUT")
    _add_dirs(planning, "suites", "baselines", "reports")

    merging = commands.add_parser("merge", help="merge shard runs into one run, then compare and report",
                                  epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    merging.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    merging.add_argument("--run-id", help="name of the merged reports/<run-id> (default: UTC time + -merged)")
    _add_dirs(merging, "suites", "baselines", "reports")

    validate = commands.add_parser("validate", help="check every suite and baseline file")
    _add_dirs(validate, "suites", "baselines")

    compare = commands.add_parser("compare", help="compare run B against run A (A/B of two builds)")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--alpha", type=finite_float, help="significance level (default: run B's gate)")
    compare.add_argument("--json", action="store_true", help="print verdicts as JSON")

    baseline = commands.add_parser("baseline", help="manage baselines")
    baseline_commands = baseline.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    update = baseline_commands.add_parser("update", help="promote a run's figures to baselines (shows the diff)")
    update.add_argument("--from", dest="source", type=Path, required=True, help="reports/<run>")
    update.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    update.add_argument("--force", action="store_true", help="promote regressed or failed cells too")
    update.add_argument("--dry-run", action="store_true", help="show the diff; write nothing")
    _add_dirs(update, "baselines")

    report = commands.add_parser("report", help="print the verdict table of a finished run")
    report.add_argument("run", type=Path)

    memory = commands.add_parser("memory", help="print the memory report of an existing server log")
    memory.add_argument("logfile", type=Path)
    memory.add_argument("--engine", choices=("sglang", "vllm"), default="sglang")
    memory.add_argument("--json", action="store_true", help="print the report as JSON")

    evaluate = commands.add_parser("eval", help="run one eval against a server that is already up")
    evaluate.add_argument("eval", choices=tuple(question_evals()))
    evaluate.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:30000")
    # Checked by the eval's own parser, which names the nearest protocol of that eval.
    evaluate.add_argument("--protocol", help="; ".join(f"{e.name}: {' | '.join(e.protocols)} (default "
                                                       f"{e.default_protocol})" for e in question_evals().values()))
    evaluate.add_argument("--questions", type=int, help="number of questions (default: all)")
    evaluate.add_argument("--shots", type=int)
    evaluate.add_argument("--max-tokens", type=int)
    evaluate.add_argument("--temperature", type=finite_float)
    evaluate.add_argument("--repeats", type=int, help="gpqa: repeats with reshuffled choices")
    evaluate.add_argument("--seed", type=int)
    evaluate.add_argument("--concurrency", type=int, default=128)
    evaluate.add_argument("--chat-template-kwargs", help='JSON, e.g. \'{"thinking": true}\'')
    evaluate.add_argument("--data", help="gpqa: a local CSV or zip")
    evaluate.add_argument("--model", help="the model name to send (default: the server's first /v1/models id)")
    evaluate.add_argument("--backend", choices=("harness", "lm-eval"), default="harness",
                          help="lm-eval runs the same eval through lm_eval.simple_evaluate (optional extra)")
    evaluate.add_argument("--api-key", default=os.environ.get("HARNESS_API_KEY"),
                          help="sent as 'Authorization: Bearer K' (default: $HARNESS_API_KEY)")
    evaluate.add_argument("--json", action="store_true", help="print the result in the result schema")

    data = commands.add_parser("data", help="datasets: fetch into the cache and verify")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_commands.add_parser("fetch", help="download a dataset into $HARNESS_DATA_DIR and verify it")
    fetch.add_argument("dataset", choices=tuple(fetchable()))
    fetch.add_argument("--hf-token", help="gpqa: fetch the gated hub copy (Idavidrein/gpqa) with this token")
    fetch.add_argument("--sha256", help="gpqa: the SHA-256 the file must have")

    local = commands.add_parser("local", help="the project's tiny model: make its Quark exports")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    prepare = local_commands.add_parser("prepare", help="export (amd-quark) and cache every local variant")
    prepare.add_argument("--variant", action="append", help="e.g. mxfp4, fp8, mxfp4-scale-defect (default: all)")

    preflight = commands.add_parser(
        "preflight", help="check checkpoints' headers and config against the fixes' rules before launching",
        description="Either every cell of a suite (--suite, optionally --cell) or one checkpoint (--checkpoint). "
                    "Exit 1 when a rule fails.")
    target = preflight.add_mutually_exclusive_group(required=True)
    target.add_argument("--suite", help="check every cell of this suite")
    target.add_argument("--checkpoint", help="a checkpoint directory, or a hub id (headers read with HF_TOKEN)")
    preflight.add_argument("--cell", action="append", help="with --suite: glob on cell ids (repeatable)")
    preflight.add_argument("--tp", type=int, default=1, help="with --checkpoint: tensor parallel size")
    preflight.add_argument("--quantization", help="with --checkpoint: the engine's --quantization (e.g. quark_mxfp4)")
    preflight.add_argument("--spec", choices=("mtp", "eagle3"), help="with --checkpoint: speculative decoding")
    preflight.add_argument("--draft", help="the EAGLE3 draft checkpoint (with --spec eagle3)")
    preflight.add_argument("--ep", type=int, default=1, help="with --checkpoint: expert parallel size")
    preflight.add_argument("--vendor", choices=("amd", "nvidia"),
                           help="with --checkpoint: the GPU vendor (default: unknown; SGLANG_USE_AITER=1 reads as amd)")
    preflight.add_argument("--engine-version", metavar="V", help=ENGINE_VERSION_HELP)
    preflight.add_argument("--python", help="the Python whose SGLang version is probed (default: this one)")
    preflight.add_argument("--hf-token", help="token for reading hub checkpoints' headers (default: $HF_TOKEN)")
    preflight.add_argument("--json", action="store_true")
    _add_dirs(preflight, "suites")

    fixes = commands.add_parser("fixes", help="the guarded fixes: their rules, the cells that guard them, "
                                              "and their latest results")
    fixes.add_argument("--json", action="store_true")
    _add_dirs(fixes, "suites", "reports")

    upgrade = commands.add_parser("upgrade", help="rewrite a result or baseline file at the current schema")
    upgrade.add_argument("path", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every way out is an exit code of EXIT_CODES_HELP: exit 1 means a regression and nothing else."""
    from harness import interrupts, secrets

    secrets.register_environment()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = secrets.RedactingStream(stdout), secrets.RedactingStream(stderr)
    try:
        with interrupts.installed():
            return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)  # --help exits 0, a usage error 2 (argparse's SystemExit)
    from harness import commands

    handler = {
        "list": commands.cmd_list, "run": commands.cmd_run, "validate": commands.cmd_validate,
        "compare": commands.cmd_compare, "baseline": commands.cmd_baseline_update, "report": commands.cmd_report,
        "upgrade": commands.cmd_upgrade, "memory": commands.cmd_memory, "eval": commands.cmd_eval,
        "data": commands.cmd_data_fetch, "local": commands.cmd_local_prepare, "preflight": commands.cmd_preflight,
        "fixes": commands.cmd_fixes, "plan": commands.cmd_plan, "merge": commands.cmd_merge,
    }[args.command]
    try:
        return handler(args)
    except HarnessError as error:
        print(f"harness: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        print(f"harness: interrupted{f' ({interrupt})' if str(interrupt) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - a bug in harness: never exit 1, the regression code
        report_internal_error(error)
        return EXIT_INTERNAL


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2))


__all__ = ["EXIT_CODES_HELP", "EXIT_USAGE", "build_parser", "main"]
