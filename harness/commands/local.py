"""`harness local prepare`: the tiny models' Quark exports and fake-quantized variants, made and cached."""

from __future__ import annotations

import argparse

from harness.commands.base import Command, action


def arguments(parser: argparse.ArgumentParser) -> None:
    prepare = action(parser, "local_command", "prepare", "export (amd-quark) and cache every local variant")
    prepare.add_argument("--variant", action="append", help="e.g. mxfp4, fp8, mxfp4-scale-defect (default: all)")


def run(args: argparse.Namespace) -> int:
    import sys

    from harness.errors import EXIT_OK
    from harness.local import models

    variants = args.variant or [v for v in models.VARIANTS if v != "bf16"]
    for variant in variants:
        for model in models.MODELS:
            if variant not in models.VARIANTS and any(variant in v for v in models.DRAFTS.values()):
                continue  # a draft's variant: below
            path = models.ensure(f"{models.PREFIX}{model}/{variant}",
                                 log=lambda line: print(line, file=sys.stderr, flush=True))
            print(f"{models.PREFIX}{model}/{variant}  {path}")
    for model, draft_variants in models.DRAFTS.items():  # the EAGLE3 drafts' derived defects
        for variant in draft_variants:
            if variant != "bf16" and (args.variant is None or variant in args.variant):
                path = models.ensure(f"{models.PREFIX}{model}/{variant}",
                                     log=lambda line: print(line, file=sys.stderr, flush=True))
                print(f"{models.PREFIX}{model}/{variant}  {path}")
    return EXIT_OK


COMMAND = Command("local", "the project's tiny model: make its Quark exports", arguments, run)
