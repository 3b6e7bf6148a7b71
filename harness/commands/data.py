"""`harness data fetch NAME`: an eval's dataset downloaded into $HARNESS_DATA_DIR and verified."""

from __future__ import annotations

import argparse

from harness.commands.base import Command, action
from harness.evals.registry import EVALS, fetchable


def arguments(parser: argparse.ArgumentParser) -> None:
    fetch = action(parser, "data_command", "fetch", "download a dataset into $HARNESS_DATA_DIR and verify it")
    # The registered names, known without importing an eval; one without data to fetch is refused at run.
    fetch.add_argument("dataset", choices=tuple(EVALS), help="the eval whose data to fetch (gsm8k, gpqa)")
    fetch.add_argument("--hf-token", help="gpqa: fetch the gated hub copy (Idavidrein/gpqa) with this token")
    fetch.add_argument("--sha256", help="gpqa: the SHA-256 the file must have")


def run(args: argparse.Namespace) -> int:
    from harness.errors import EXIT_OK, ConfigError
    from harness.evals import data

    fetch = EVALS[args.dataset].fetch
    if fetch is None:
        raise ConfigError(f"{args.dataset}: no data to fetch (harness data fetch takes {', '.join(fetchable())})")
    for path in fetch(hf_token=args.hf_token, sha256=args.sha256):
        print(f"{path}  sha256 {data.sha256_of(path)}")
    return EXIT_OK


COMMAND = Command("data", "datasets: fetch into the cache and verify", arguments, run)
