"""The harness's own overhead per cell, against the SGLang test double.

Overhead = wall time of `run_cell` (launch, readiness, version probe, teardown of the whole tree,
log parsing) minus the server's own cost: the same argv started bare, read until its ready line
and first 200 from /v1/models with a 5 ms spin, then killed. Runs interleaved, medians reported.
Target (issue 3): under 2 s per cell.

    .venv/bin/python benchmarks/bench_cell_overhead.py [--runs 7] [--load-s 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cellrun import RunOptions, free_port, run_cell  # noqa: E402
from harness.engines import get_engine  # noqa: E402
from harness.transport import http_get  # noqa: E402
from tests.fake_cells import fake_cell  # noqa: E402

READY = "The server is fired up and ready to roll!"


def bare_start_stop(cell) -> float:
    """The server's own start-to-ready and a SIGKILL stop, with no harness in between."""
    port = free_port()
    command = get_engine("sglang").command(cell, python=sys.executable, port=port, devices=[0])
    start = time.perf_counter()
    process = subprocess.Popen(list(command.argv), env={**os.environ, **command.env}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True, text=True)
    for line in process.stdout:
        if READY in line:
            break
    while http_get(command.base_url + "/v1/models", timeout=1)[0] != 200:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return time.perf_counter() - start


def harness_cell(cell, run_dir: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    result = run_cell(cell, run_dir, RunOptions())
    elapsed = time.perf_counter() - start
    assert result.status == "ok", result.error
    return elapsed, result.timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--load-s", type=float, default=0.5, help="the double's simulated load time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cell = fake_cell(tmp_path, tp=2, env={"FAKE_SGLANG_LOAD_S": str(args.load_s)})
        bare, harness, teardowns, readies = [], [], [], []
        for index in range(args.runs):
            bare.append(bare_start_stop(cell))
            elapsed, timings = harness_cell(cell, tmp_path / f"run{index}")
            harness.append(elapsed)
            teardowns.append(timings["teardown_s"])
            readies.append(timings["launch_to_ready_s"])
    figures = {
        "runs": args.runs,
        "server_load_s": args.load_s,
        "bare_start_stop_median_s": round(statistics.median(bare), 3),
        "harness_cell_median_s": round(statistics.median(harness), 3),
        "overhead_median_s": round(statistics.median(h - b for h, b in zip(harness, bare)), 3),
        "harness_launch_to_ready_median_s": round(statistics.median(readies), 3),
        "harness_teardown_median_s": round(statistics.median(teardowns), 3),
        "target_s": 2.0,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
