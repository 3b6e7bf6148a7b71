"""History and publish over a nightly's worth of runs (issue 15): how long `harness history` and `harness publish`
take over N synthetic nightly runs of C cells each (GSM8K of 1319 questions with per-question outcomes,
memory, accept length), written once by harness's own writers. Target: a quarter of nightlies of a suite
(90 runs of 8 cells) published in under a minute.

    .venv/bin/python benchmarks/bench_history.py [--runs 90] [--cells 8] [--dir /tmp/harness-history-bench]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.history import History  # noqa: E402
from harness.report.site import publish  # noqa: E402
from harness.steps import trends  # noqa: E402
from tests.builders import GSM8K_PROTOCOL, gsm8k_result  # noqa: E402
from tests.history_runs import write_run  # noqa: E402


def nightly(root: Path, runs: int, cells: int) -> None:
    rng = random.Random(0)
    for night in range(runs):
        results = []
        for index in range(cells):
            accuracy = 0.94 if night < runs * 2 // 3 or index else 0.90  # one cell slides two thirds in
            table = {f"gsm8k-test-{q:04d}": rng.random() < accuracy for q in range(1319)}
            result = gsm8k_result(f"glm5/quark-mxfp4/mtp/tp{index + 1}", table, protocol=GSM8K_PROTOCOL,
                                  memory={"weights_gib": 40.0 + rng.gauss(0, 0.05)},
                                  accept_length=2.7 + rng.gauss(0, 0.03))
            day = f"2026-{1 + night // 28:02d}-{1 + night % 28:02d}T02:00:00Z"
            results.append(dataclasses.replace(result, engine={"name": "sglang", "version": f"0.5.{night}"},
                                               started_at=day, finished_at=day))
        write_run(root, f"night-{night:03d}", results, started_at=day)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=90)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/harness-history-bench"))
    args = parser.parse_args()
    reports = args.dir / f"reports-{args.runs}x{args.cells}"
    if not reports.exists():
        nightly(reports, args.runs, args.cells)
    size = sum(p.stat().st_size for p in reports.rglob("*") if p.is_file()) / (1 << 20)
    start = time.perf_counter()
    history = History.load([reports])
    found = trends(history)
    history_s = time.perf_counter() - start
    site = args.dir / "site"
    shutil.rmtree(site, ignore_errors=True)
    start = time.perf_counter()
    publish(History.load([reports]), site, baselines_dir=None)
    publish_s = time.perf_counter() - start
    steps = sum(len(t.steps) for t in found)
    print(f"{args.runs} runs x {args.cells} cells ({size:.0f} MiB of results): history + steps {history_s:.2f} s "
          f"({len(found)} series, {steps} step(s)); publish {publish_s:.2f} s")


if __name__ == "__main__":
    main()
