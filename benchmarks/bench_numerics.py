"""The numerics gate against GSM8K on the tiny model, on a real vLLM (CPU build), in one run.

    .venv/bin/python benchmarks/bench_numerics.py [--aa-runs 10] [--questions 200] [--json PATH]

1. Tokens to flag the planted defect: the MXFP4 cell (the real amd-quark export, the baseline side) and the
   planted scale defect, each on a fresh server, both gates measured on the same server: the numerics eval (the suite's 64
   windows of 128 tokens) and GSM8K (the local suite's protocol, `--questions` questions; prompt tokens from
   the server's /tokenize, completion tokens from its usage). For n = 2, 3, ... the gate's own rule
   (harness.compare.compare_metric, default gate: alpha 0.01 AND the minimum effect) on the first n windows /
   questions; tokens (prompt + generated) of the defect's run at the first n that is REGRESSED. Goal: the
   numerics gate needs at most a tenth of GSM8K's tokens.
2. The subtle defect (one block in 16 of layer 1's down_proj one exponent too high): both gates' p-values,
   numerics on the 64 windows, GSM8K on `--questions` questions.
3. False alarms: `--aa-runs` runs of `harness run --suite local-numerics --cell tiny-qwen3/quark-mxfp4/none/tp1`,
   each a fresh server, against the committed baselines: how many REGRESSED.
4. Wall time of `harness run --suite local-numerics` (every cell, engine start-ups included).
Needs .venv-vllm (`make vllm-env`) and the committed references; run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.baselines import BaselineEntry, Provenance  # noqa: E402
from harness.cellrun import RunOptions, materialize, run_cell  # noqa: E402
from harness.compare import State, compare_metric  # noqa: E402
from harness.evals import numerics  # noqa: E402
from harness.evals.gsm8k import prepare as prepare_gsm8k  # noqa: E402
from harness.evals.runner import served_model  # noqa: E402
from harness.matrix import expand  # noqa: E402
from harness.results import MetricSample  # noqa: E402
from harness.strict import Where  # noqa: E402
from harness.suite import GateSettings, load_suite, parse_eval  # noqa: E402
from harness.transport import ClientSettings, Request, run_requests  # noqa: E402

SUITE = ROOT / "suites" / "local-numerics.yaml"
REFERENCES = ROOT / "baselines" / "references" / "local-numerics"
CANDIDATE = "tiny-qwen3/quark-mxfp4/none/tp1"
PLANTED = "tiny-qwen3-scale-defect/quark-mxfp4/none/tp1"
SUBTLE = "tiny-qwen3-sparse-scale-defect/quark-mxfp4/none/tp1"
PROVENANCE = Provenance(source="harness", date="bench")


def measure_cell(cell, run_dir: Path, questions: int) -> dict:
    """One fresh server: the numerics eval and GSM8K with per-question tokens."""
    found: dict = {}

    def evaluator(cell, base_url: str, cell_dir: Path) -> dict:
        model = served_model(base_url, cell.checkpoint.path)
        config = next(c for c in cell.evals if c.name == "numerics")
        found["numerics"] = numerics.run(config, base_url, model=model,
                                         target=numerics.target_for(cell.subject(), config, cell_dir, REFERENCES))
        found["gsm8k"] = gsm8k_with_tokens(base_url, model, questions)
        return {}

    result = run_cell(materialize(cell), run_dir, RunOptions(evaluator=evaluator))
    if result.status != "ok":
        raise SystemExit(f"{cell.id}: {result.error}")
    return found


def gsm8k_with_tokens(base_url: str, model: str, questions: int) -> dict:
    config = parse_eval("gsm8k", {"protocol": "sglang-fewshot", "dataset": "synthetic-arith-v1", "shots": 0,
                                  "questions": questions, "max_tokens": 24, "concurrency": 8}, Where("bench"))
    prepared = prepare_gsm8k(config, model)
    requests = list(prepared.requests)
    responses = run_requests(base_url, requests, ClientSettings(concurrency=8))
    tokenized = run_requests(base_url, [Request(r.id, "/tokenize", {"model": model, "prompt": r.body["prompt"]},
                                                raw=True) for r in requests], ClientSettings(concurrency=8))
    prompt_tokens = {t.id: len(json.loads(t.text)["tokens"]) for t in tokenized}
    rows = []
    for response in responses:
        assert response.error is None, response.error
        _, correct, _ = prepared.scorer(response.id, response.text or "")
        rows.append({"id": response.id, "correct": correct,
                     "tokens": prompt_tokens[response.id] + (response.completion_tokens or 0)})
    return {"rows": rows, "accuracy": sum(r["correct"] for r in rows) / len(rows)}


def numerics_verdict(metric: str, before: dict, now: dict, n: int, protocol: dict):
    keys = sorted(before)[:n]
    base = {k: before[k] for k in keys}
    current = {k: now[k] for k in keys}
    entry = BaselineEntry(metric, PROVENANCE, value=sum(base.values()) / n, n=n, protocol=protocol, values=base)
    sample = MetricSample(sum(current.values()) / n, n, None, protocol, current)
    return compare_metric(metric, sample, entry, GateSettings())


def gsm8k_verdict(before: list[dict], now: list[dict], n: int):
    base = {r["id"]: r["correct"] for r in before[:n]}
    current = {r["id"]: r["correct"] for r in now[:n]}
    entry = BaselineEntry("gsm8k.accuracy", PROVENANCE, value=sum(base.values()) / n, n=n, protocol=None,
                          outcomes=base)
    return compare_metric("gsm8k.accuracy", MetricSample(sum(current.values()) / n, n, current, None), entry,
                          GateSettings())


def tokens_to_flag(base: dict, defect: dict, window: int, generated_per_window: int) -> dict:
    """The first n at which each gate says REGRESSED, and the defect run's tokens up to it."""
    out = {}
    kld_before, kld_now = base["numerics"].item_values["kld"], defect["numerics"].item_values["kld"]
    protocol = defect["numerics"].protocol
    for n in range(2, len(kld_before) + 1):
        verdict = numerics_verdict("numerics.kld", kld_before, kld_now, n, protocol)
        if verdict.state is State.REGRESSED:
            out["numerics"] = {"n": n, "tokens": n * (window + generated_per_window), "p": verdict.p_value}
            break
    rows_before, rows_now = base["gsm8k"]["rows"], defect["gsm8k"]["rows"]
    for n in range(2, len(rows_before) + 1):
        verdict = gsm8k_verdict(rows_before, rows_now, n)
        if verdict.state is State.REGRESSED:
            out["gsm8k"] = {"n": n, "tokens": sum(r["tokens"] for r in rows_now[:n]), "p": verdict.p_value}
            break
    return out


def aa_runs(count: int, reports: Path) -> dict:
    """Fresh servers on the candidate's checkpoint, gated against the committed baselines."""
    regressed, codes, spread = 0, [], 0.0
    for index in range(count):
        run_id = f"aa-{index}"
        code = subprocess.call([sys.executable, "-m", "harness", "run", "--suite", "local-numerics", "--cell",
                                CANDIDATE, "--run-id", run_id, "--reports-dir", str(reports)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        results = json.loads((reports / run_id / "results.json").read_text())
        codes.append(code)
        regressed += any(v["state"] == "REGRESSED" for v in results["verdicts"])
        kld = next(v for v in results["verdicts"] if v["metric"] == "numerics.kld")
        spread = max(spread, abs(kld["delta"]))
    return {"runs": count, "regressed": regressed, "exit_codes": codes, "max_abs_kld_delta": spread}


def suite_wall_time(reports: Path) -> dict:
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "harness", "run", "--suite", "local-numerics", "--run-id", "timed",
                            "--reports-dir", str(reports)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=ROOT)
    return {"wall_s": round(time.perf_counter() - start, 1), "exit_code": code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aa-runs", type=int, default=10)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cells = {cell.id: cell for cell in expand(load_suite(SUITE))}
    config = next(c for c in cells[CANDIDATE].evals if c.name == "numerics")
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        measured = {cell_id: measure_cell(cells[cell_id], Path(tmp) / "cells", args.questions)
                    for cell_id in (CANDIDATE, PLANTED, SUBTLE)}
        base = measured[CANDIDATE]
        flagged = tokens_to_flag(base, measured[PLANTED], config.params["window"], 1)
        report["planted"] = {**flagged, "ratio": round(flagged["numerics"]["tokens"] / flagged["gsm8k"]["tokens"], 4)
                             if "numerics" in flagged and "gsm8k" in flagged else None}
        window_count = len(base["numerics"].item_values["kld"])
        subtle = measured[SUBTLE]
        report["subtle"] = {
            "numerics_kld": numerics_verdict("numerics.kld", base["numerics"].item_values["kld"],
                                             subtle["numerics"].item_values["kld"], window_count,
                                             subtle["numerics"].protocol).to_dict(),
            "gsm8k": gsm8k_verdict(base["gsm8k"]["rows"], subtle["gsm8k"]["rows"], args.questions).to_dict(),
            "gsm8k_accuracy": [base["gsm8k"]["accuracy"], subtle["gsm8k"]["accuracy"]],
        }
        report["aa"] = aa_runs(args.aa_runs, Path(tmp) / "aa")
        report["suite"] = suite_wall_time(Path(tmp) / "suite")
    print(json.dumps(report, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
