"""`harness preflight`: the loading-stack rules on each cell's checkpoint headers and config (or one
checkpoint's), for the SGLang release the engine runs, and the predicted weight memory; exit 1 on a
predicted load failure."""

from __future__ import annotations

import argparse

from harness.commands.base import ENGINE_VERSION_HELP, Command, add_dirs, print_json


def arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--suite", help="check every cell of this suite")
    target.add_argument("--checkpoint", help="a checkpoint directory, or a hub id (headers read with HF_TOKEN)")
    parser.add_argument("--cell", action="append", help="with --suite: glob on cell ids (repeatable)")
    parser.add_argument("--tp", type=int, default=1, help="with --checkpoint: tensor parallel size")
    parser.add_argument("--quantization", help="with --checkpoint: the engine's --quantization (e.g. quark_mxfp4)")
    parser.add_argument("--spec", choices=("mtp", "eagle3"), help="with --checkpoint: speculative decoding")
    parser.add_argument("--draft", help="the EAGLE3 draft checkpoint (with --spec eagle3)")
    parser.add_argument("--ep", type=int, default=1, help="with --checkpoint: expert parallel size")
    parser.add_argument("--vendor", choices=("amd", "nvidia"),
                        help="with --checkpoint: the GPU vendor (default: unknown; SGLANG_USE_AITER=1 reads as amd)")
    parser.add_argument("--engine-version", metavar="V", help=ENGINE_VERSION_HELP)
    parser.add_argument("--python", help="the Python whose SGLang version is probed (default: this one)")
    parser.add_argument("--hf-token", help="token for reading hub checkpoints' headers (default: $HF_TOKEN)")
    parser.add_argument("--json", action="store_true")
    add_dirs(parser, "suites")


def run(args: argparse.Namespace) -> int:
    """Exit 1 when a rule fails; 3 when no cell could be checked at all (every checkpoint unreadable: a CI
    step must not read that as checked); else 0, with a count of the cells skipped."""
    import sys

    from harness import preflight
    from harness.errors import EXIT_INFRA, EXIT_OK, EXIT_REGRESSION
    from harness.report.format import plural

    checks = _suite_checks(args) if args.suite else [_checkpoint_check(args)]
    if args.json:
        print_json([{"cell": c.cell_id, **c.to_dict()} for c in checks])
    else:
        print("\n".join(line for check in checks for line in preflight.describe(check)))
    skipped = [check for check in checks if check.unavailable]
    failed = [check for check in checks if check.failures]
    print(f"harness: preflight: {plural(len(checks) - len(skipped), 'cell')} checked, {len(failed)} failed, "
          f"{len(skipped)} skipped (checkpoint not readable)", file=sys.stderr)
    if failed:
        return EXIT_REGRESSION
    if checks and len(skipped) == len(checks):
        print("harness: error: preflight checked nothing: no cell's checkpoint could be read (download them, "
              "or give --hf-token for hub ids)", file=sys.stderr)
        return EXIT_INFRA
    return EXIT_OK


def _suite_checks(args: argparse.Namespace) -> list:
    import sys

    from harness import pipeline, preflight
    from harness.cellrun import materialize
    from harness.matrix import expand, select
    from harness.suite import find_suite, load_suite

    suite = load_suite(find_suite(args.suite, args.suites_dir))
    cells = [materialize(cell, create=False) for cell in select(expand(suite), args.cell)]
    versions = pipeline.engine_versions(cells, args.python or sys.executable, args.engine_version)
    return [preflight.check_cell(cell, token=args.hf_token, engine_version=versions.get(cell.engine))
            for cell in cells]


def _checkpoint_check(args: argparse.Namespace):
    import os
    import sys

    from harness import preflight
    from harness.engines.probe import package_version
    from harness.errors import ConfigError
    from harness.loading.launch import Launch
    from harness.loading.releases import choose

    if args.draft and args.spec != "eagle3":
        raise ConfigError("--draft: only an EAGLE3 draft is checked (--spec eagle3)")
    if args.spec == "eagle3" and not args.draft:
        raise ConfigError("--spec eagle3 needs --draft PATH")
    release = choose(args.engine_version or package_version(args.python or sys.executable, "sglang")[0])
    # The environment preflight runs in stands for the server's (SGLANG_USE_AITER and the like).
    launch = Launch(tp=args.tp, quantization=args.quantization, release=release.release, ep=args.ep,
                    spec=args.spec or "none", env=dict(os.environ), vendor=args.vendor)
    check = preflight.check_checkpoint(args.checkpoint, args.checkpoint, launch, draft=args.draft,
                                       token=args.hf_token, release=release)
    if check.unavailable:  # named on the command line: not finding it is the user's error, not a skip
        raise ConfigError(f"--checkpoint: {check.unavailable}")
    return check


COMMAND = Command("preflight", "check checkpoints' headers and config against the fixes' rules before launching",
                  arguments, run, description="Either every cell of a suite (--suite, optionally --cell) or one "
                                              "checkpoint (--checkpoint). Exit 1 when a rule fails.")
