"""Cells packed onto one host's GPUs (issue 7): wall time against the ideal packing.

A suite of SGLang test-double cells on a host of 8 fake GPUs (device ids only): TP4, TP2 and TP1 cells
whose servers load for --load-s seconds. Each cell is first run alone (--max-parallel 1) to measure its
own duration; the ideal is the makespan of the same packing (largest first) with those durations and
no overhead (harness.schedule.simulate). Then the whole suite runs packed, and its wall time is
compared with the ideal. Also shown: the bound no packing can beat, total GPU-seconds / 8.
Target: packed wall time within 10% of the ideal.

    .venv/bin/python benchmarks/bench_packing.py [--load-s 3] [--tp4 2 --tp2 4 --tp1 8]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cli import main as harness  # noqa: E402
from harness.matrix import expand  # noqa: E402
from harness.schedule import simulate  # noqa: E402
from harness.suite import load_suite  # noqa: E402
from tests.fake_cells import FAKE_ENGINES  # noqa: E402

HOST_GPUS = 8


def write_suite(root: Path, counts: dict[int, int], load_s: float) -> Path:
    models = [{"id": f"tp{tp}-{i}", "fix": "glm5-mxfp4-mtp", "checkpoints": {"quark-mxfp4": f"fake/tp{tp}-{i}"},
               "matrix": {"tp": [tp]}} for tp, count in counts.items() for i in range(count)]
    suite = {
        "schema_version": 1, "name": "packing", "engine": "sglang",
        "hardware": {"vendor": "amd", "gpus": HOST_GPUS},
        "timeouts": {"launch_s": 60, "eval_s": 60, "teardown_s": 10},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES), "FAKE_SGLANG_LOAD_S": str(load_s),
                           "FAKE_SGLANG_DEVICE_LOG": str(root / "devices.jsonl")}},
        "matrix": {"quant": ["quark-mxfp4"], "spec": ["none"], "tp": [1]},
        "models": models,
    }
    (root / "suites").mkdir(parents=True)
    (root / "baselines").mkdir()
    path = root / "suites" / "packing.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def run(root: Path, run_id: str, *extra: str) -> tuple[float, dict]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = harness(["run", "--suite", "packing", "--run-id", run_id, "--no-preflight",
                        "--gpus", ",".join(map(str, range(HOST_GPUS))), *extra,
                        "--suites-dir", str(root / "suites"), "--baselines-dir", str(root / "baselines"),
                        "--reports-dir", str(root / "reports")])
    wall = time.perf_counter() - start
    results = json.loads((root / "reports" / run_id / "results.json").read_text())
    assert code == 0 and all(c["error"] is None for c in results["cells"]), code
    return wall, {c["cell_id"]: c for c in results["cells"]}


def device_use(log: Path) -> tuple[int, bool]:
    """From the test double's own start/stop records: the most GPUs held at once, and whether any device
    was ever held by two servers at the same time."""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    held: dict[str, int] = {}
    peak, shared = 0, False
    for event in sorted(events, key=lambda e: (e["time"], e["event"] == "start")):  # stops first on ties
        for device in filter(None, event["devices"].split(",")):
            held[device] = held.get(device, 0) + (1 if event["event"] == "start" else -1)
            shared = shared or held[device] > 1
        peak = max(peak, sum(1 for count in held.values() if count > 0))
    return peak, shared


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load-s", type=float, default=3.0)
    parser.add_argument("--tp4", type=int, default=2)
    parser.add_argument("--tp2", type=int, default=4)
    parser.add_argument("--tp1", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-packing-") as tmp:
        root = Path(tmp)
        cells = expand(load_suite(write_suite(root, {4: args.tp4, 2: args.tp2, 1: args.tp1}, args.load_s)))
        serial_wall, alone = run(root, "alone", "--max-parallel", "1")
        durations = {cell_id: cell["timings"]["total_s"] for cell_id, cell in alone.items()}
        ideal = simulate(durations, cells, HOST_GPUS)
        bound = max(sum(durations[c.id] * c.gpus for c in cells) / HOST_GPUS, max(durations.values()))
        (root / "devices.jsonl").unlink()
        packed_wall, packed = run(root, "packed")
        right_size = all(len(c["machine"]["devices"]) == c["cell"]["tp"] for c in packed.values())
        peak, shared = device_use(root / "devices.jsonl")
        print(json.dumps({
            "host_gpus": HOST_GPUS, "cells": {"tp4": args.tp4, "tp2": args.tp2, "tp1": args.tp1},
            "server_load_s": args.load_s,
            "cell_alone_s_median": round(sorted(durations.values())[len(durations) // 2], 3),
            "serial_wall_s": round(serial_wall, 2),
            "ideal_packing_s": round(ideal, 2), "lower_bound_s": round(bound, 2),
            "packed_wall_s": round(packed_wall, 2),
            "packed_over_ideal": round(packed_wall / ideal, 3),
            "each_cell_got_its_tp_in_gpus": right_size,
            "peak_gpus_in_use": peak, "a_gpu_shared_by_two_servers": shared,
            "median_timings_alone_vs_packed_s": {
                key: [round(statistics.median(c["timings"].get(key, 0) for c in run_cells.values()), 3)
                      for run_cells in (alone, packed)]
                for key in ("launch_to_ready_s", "teardown_s", "release_wait_s", "total_s")},
            "target": "packed_over_ideal <= 1.10",
        }, indent=2))


if __name__ == "__main__":
    main()
