"""The sequential gate (harness.sequential, issue 26): false alarms, questions to a verdict, replays of real runs.

    python benchmarks/bench_sequential.py [--sims 10000] [--quick] [--out FILE.json]

1. A/A under continuous monitoring (a look after every question): the rate of REGRESSED with its 95% Wilson
   interval, at several accuracies and discordance rates, beside the fixed-n gate's own rate.
2. Questions to a verdict (mean, 90th percentile) for healthy cells and true drops of 1, 2, 5, 10 and 20 points
   on GSM8K's 1,319 questions, beside the fixed-n gate's power (REGRESSED rate) at the same alpha and the
   sequential gate's (early stop or the fixed-n test at the budget).
3. Real recorded outcomes (reports/, benchmarks/rig-runs/, tests/fixtures/history/): every run with
   per-question outcomes replayed in the fixed order against its baseline (baselines/<suite>.yaml), the
   sequential verdict against the fixed-n one, the questions saved.
4. The nightly's GPU-hours (`harness plan`'s per-cell estimates) with and without, from (2)'s figures.

The simulation is a numpy twin of harness.sequential's Monitor (every look, every question, vectorised over
simulations); tests/test_sequential.py checks the twin against the Monitor itself on random streams.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import sequential  # noqa: E402
from harness.stats import wilson_interval  # noqa: E402

ALPHA, MIN_EFFECT, BUDGET = 0.01, 0.01, 1319


# --- the numpy twin of harness.sequential -------------------------------------------------------------

def capital(x: np.ndarray, m: float, side: int, alpha: float) -> np.ndarray:
    """Capital processes of BettingTest(m, side, alpha) over each row of x (simulations x questions)."""
    t = np.arange(1, x.shape[1] + 1, dtype=float)
    fake, prior_mean, prior_var = sequential.FAKE_OBSERVATIONS, sequential.PRIOR_MEAN, sequential.PRIOR_VARIANCE
    mean = np.minimum((fake * prior_mean + np.cumsum(x, axis=1)) / (t + fake), 1.0)
    variance = (fake * prior_var + np.cumsum((x - mean) ** 2, axis=1)) / (t + fake)
    before = np.concatenate([np.full((x.shape[0], 1), prior_var), variance[:, :-1]], axis=1)
    bet = np.sqrt(2.0 * math.log(1.0 / alpha) / (t * np.log1p(t) * before))
    up, down = (m, 1.0 - m) if side > 0 else (1.0 - m, m)
    if up > 0:
        bet = np.minimum(bet, sequential.TRUNCATION / up)
    if down > 0:
        bet = np.maximum(bet, -sequential.TRUNCATION / down)
    return np.cumprod(1.0 + bet * side * (x - m), axis=1)


class BinomialTails:
    """P(Bin(N, 1/2) >= k) for every N, k up to a size: the exact McNemar p-values, looked up."""

    def __init__(self, size: int):
        log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, size + 1)))])
        n = np.arange(size + 1)[:, None]
        k = np.arange(size + 1)[None, :]
        with np.errstate(invalid="ignore"):
            log_pmf = log_fact[n] - log_fact[k] - log_fact[np.clip(n - k, 0, None)] - n * math.log(2.0)
        pmf = np.where(k <= n, np.exp(log_pmf), 0.0)
        self.table = np.minimum(np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1], 1.0)
        self.table[:, 0] = 1.0

    def upper(self, k: np.ndarray, n: np.ndarray) -> np.ndarray:
        return self.table[n, np.clip(k, 0, self.table.shape[1] - 1)]


def paired_run(before: np.ndarray, now: np.ndarray, tails: BinomialTails, alpha: float = ALPHA,
               min_effect: float = MIN_EFFECT) -> dict[str, np.ndarray]:
    """The sequential gate on paired outcome rows (simulations x questions, in the asking order): per row the
    questions asked, the verdict (-1 REGRESSED, 0 PASS, 1 IMPROVED), and the fixed-n verdict at the budget."""
    x = (now.astype(float) - before.astype(float) + 1.0) / 2.0
    b = np.cumsum(before & ~now, axis=1)
    c = np.cumsum(~before & now, axis=1)
    t = np.arange(1, x.shape[1] + 1)
    delta = (c - b) / t
    large = np.abs(delta) >= min_effect - 1e-12
    fixed_regressed = (delta < 0) & (tails.upper(b, b + c) < alpha) & large
    fixed_improved = (delta > 0) & (tails.upper(c, b + c) < alpha) & large
    margin = sequential.EARLY_MARGIN * min_effect
    drop = capital(x, (1.0 - margin) / 2.0, -1, alpha) >= 1.0 / alpha
    gain = capital(x, (1.0 + margin) / 2.0, +1, alpha) >= 1.0 / alpha
    small = capital(x, (1.0 - min_effect) / 2.0, +1, alpha) >= 1.0 / alpha
    regressed_now = drop & fixed_regressed
    pass_now = small & ~fixed_regressed
    decided = regressed_now | pass_now
    any_decided = decided.any(axis=1)
    first = np.where(any_decided, decided.argmax(axis=1), x.shape[1] - 1)
    rows = np.arange(x.shape[0])
    at_budget = np.where(fixed_regressed[:, -1], -1, np.where(fixed_improved[:, -1], 1, 0))
    early = np.where(regressed_now[rows, first], -1,
                     np.where(gain[rows, first] & fixed_improved[rows, first], 1, 0))
    verdict = np.where(any_decided, early, at_budget)
    return {"asked": first + 1, "verdict": verdict, "fixed": at_budget, "early": any_decided}


def simulate_pairs(rng: np.random.Generator, sims: int, n: int, accuracy: float, discordance: float,
                   drop: float) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and candidate outcomes: the baseline right with `accuracy`; the candidate flips a right answer
    with probability (discordance / 2 + drop) / accuracy and a wrong one with (discordance / 2) / (1 - accuracy):
    discordant pairs at rate `discordance` when nothing changed, a true drop of `drop` otherwise."""
    before = rng.random((sims, n)) < accuracy
    flip_right = (discordance / 2.0 + drop) / accuracy
    flip_wrong = (discordance / 2.0) / (1.0 - accuracy)
    u = rng.random((sims, n))
    now = np.where(before, u >= flip_right, u < flip_wrong)
    return before, now


def chunked(rng, sims: int, tails: BinomialTails, chunk: int = 1000, **model) -> dict[str, np.ndarray]:
    parts = []
    for start in range(0, sims, chunk):
        before, now = simulate_pairs(rng, min(chunk, sims - start), BUDGET, **model)
        parts.append(paired_run(before, now, tails))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def rate(hits: int, total: int) -> dict:
    low, high = wilson_interval(hits / total, total)
    return {"rate": hits / total, "ci95": [low, high], "hits": int(hits), "of": total}


# --- the unpaired form (an imported baseline: a value and n) ----------------------------------------------

Z_ONE_SIDED = {0.01: 2.3263478740408408, 0.05: 1.6448536269514722}


def unpaired_run(baseline_right: np.ndarray, baseline_n: int, now: np.ndarray, alpha: float = ALPHA,
                 min_effect: float = MIN_EFFECT) -> dict[str, np.ndarray]:
    """The sequential gate against a value and n per row (harness.sequential's unpaired Monitor)."""
    sims, n = now.shape
    x = now.astype(float)
    t = np.arange(1, n + 1)
    right = np.cumsum(now, axis=1)
    value = right / t
    p0 = (baseline_right / baseline_n)[:, None]
    pooled = (p0 * baseline_n + right) / (baseline_n + t)
    se = np.sqrt(pooled * (1 - pooled) * (1.0 / baseline_n + 1.0 / t))
    delta = value - p0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, -delta / se, np.where(delta < 0, np.inf, -np.inf))
    large = np.abs(delta) >= min_effect - 1e-12
    fixed_regressed = (delta < 0) & (z > Z_ONE_SIDED[alpha]) & large
    regressed_now = np.zeros_like(fixed_regressed)
    pass_now = np.zeros_like(fixed_regressed)
    for row in range(sims):  # the baseline's bounds differ per row: one capital process each
        right0 = int(baseline_right[row])
        lower = sequential.clopper_pearson(right0, baseline_n, alpha / 2, -1)
        upper = sequential.clopper_pearson(right0, baseline_n, alpha / 2, +1)
        margin = sequential.EARLY_MARGIN * min_effect
        drop = capital(x[row : row + 1], max(lower - margin, 0.0), -1, alpha / 2)[0] >= 2.0 / alpha
        small = capital(x[row : row + 1], max(upper - min_effect, 0.0), +1, alpha / 2)[0] >= 2.0 / alpha
        regressed_now[row] = drop & fixed_regressed[row]
        pass_now[row] = small & ~fixed_regressed[row]
    decided = regressed_now | pass_now
    any_decided = decided.any(axis=1)
    first = np.where(any_decided, decided.argmax(axis=1), n - 1)
    rows = np.arange(sims)
    verdict = np.where(any_decided, np.where(regressed_now[rows, first], -1, 0), np.where(fixed_regressed[:, -1], -1, 0))
    return {"asked": first + 1, "verdict": verdict, "fixed": np.where(fixed_regressed[:, -1], -1, 0),
            "early": any_decided}


# --- 1. false alarms, 2. questions to a verdict -------------------------------------------------------

def false_alarms(rng, sims: int, tails: BinomialTails) -> list[dict]:
    rows = []
    for accuracy in (0.5, 0.8, 0.94):
        for discordance in (0.02, 0.06):
            start = time.perf_counter()
            found = chunked(rng, sims, tails, accuracy=accuracy, discordance=discordance, drop=0.0)
            rows.append({"form": "paired", "accuracy": accuracy, "discordance": discordance,
                         "sequential": rate(int((found["verdict"] == -1).sum()), sims),
                         "fixed_n": rate(int((found["fixed"] == -1).sum()), sims),
                         "mean_asked": float(found["asked"].mean()), "seconds": round(time.perf_counter() - start, 1)})
    for accuracy in (0.5, 0.8, 0.94):
        start = time.perf_counter()
        parts = []
        for begin in range(0, sims, 1000):
            size = min(1000, sims - begin)
            baseline_right = rng.binomial(BUDGET, accuracy, size=size)
            parts.append(unpaired_run(baseline_right, BUDGET, rng.random((size, BUDGET)) < accuracy))
        verdict = np.concatenate([p["verdict"] for p in parts])
        fixed = np.concatenate([p["fixed"] for p in parts])
        asked = np.concatenate([p["asked"] for p in parts])
        rows.append({"form": "unpaired", "accuracy": accuracy, "discordance": None,
                     "sequential": rate(int((verdict == -1).sum()), sims), "fixed_n": rate(int((fixed == -1).sum()), sims),
                     "mean_asked": float(asked.mean()), "seconds": round(time.perf_counter() - start, 1)})
    return rows


DROPS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.10, 0.20)


def questions_to_verdict(rng, sims: int, tails: BinomialTails) -> list[dict]:
    rows = []
    for discordance in (0.0, 0.02):
        for drop in DROPS:
            found = chunked(rng, sims, tails, accuracy=0.94, discordance=discordance, drop=drop)
            rows.append({"accuracy": 0.94, "discordance": discordance, "drop": drop,
                         "mean_asked": float(found["asked"].mean()),
                         "p90_asked": float(np.percentile(found["asked"], 90)),
                         "stopped_early": float(found["early"].mean()),
                         "regressed_sequential": float((found["verdict"] == -1).mean()),
                         "regressed_fixed_n": float((found["fixed"] == -1).mean()),
                         "agree": float((found["verdict"] == found["fixed"]).mean())})
    return rows


# --- 3. replays of real recorded outcomes -----------------------------------------------------------------

RIG_RUNS = ROOT / "benchmarks" / "rig-runs"
LOCAL_RUNS = ROOT / "tests" / "fixtures" / "history" / "local-runs.tar.xz"


def recorded_runs(extra: list[Path]) -> list[tuple[str, Path]]:
    """(label, results.json) of every recorded run with per-question outcomes: the local runs packed in the
    history fixture, the rig's runs, and any reports/ directories named."""
    import tarfile
    import tempfile

    found = []
    unpacked = Path(tempfile.mkdtemp())
    with tarfile.open(LOCAL_RUNS) as tar:
        tar.extractall(unpacked, filter="data")
    found += [(f"fixture {p.parent.name}", p) for p in sorted(unpacked.glob("*/results.json"))]
    found += [(f"rig {p.parent.name} {p.name.split('.')[0]}", p) for p in sorted(RIG_RUNS.glob("*/*results.json"))]
    for root in extra:
        found += [(f"reports {p.parent.name}", p) for p in sorted(root.glob("*/results.json"))]
    return found


def replay_runs(extra: list[Path]) -> list[dict]:
    """Each accuracy figure with per-question outcomes and a baseline, gated fixed-n (harness.compare, as the
    run was) and sequentially (harness.sequential.replay, then the fixed-n test at the budget)."""
    from harness.baselines import baseline_path, load_baselines
    from harness.compare import compare_metric
    from harness.metrics import samples
    from harness.results import load_run
    from harness.suite import GateSettings, find_suite, load_suite

    rows = []
    for label, path in recorded_runs(extra):
        run = load_run(path)
        try:
            suite = load_suite(find_suite(run.suite, ROOT / "suites"))
        except Exception:  # noqa: BLE001 - a suite renamed since: its figures cannot be gated today
            continue
        baselines = load_baselines(baseline_path(ROOT / "baselines", suite.baselines))
        gate = GateSettings(**{**GateSettings().__dict__, "alpha": suite.gate.alpha, "min_effect": suite.gate.min_effect})
        for result in run.cells:
            gated_as = result.cell.get("canary_of") and result.cell_id.replace(
                result.cell_id.split("/")[0], result.cell["canary_of"], 1)
            entries = baselines.cells.get(gated_as or result.cell_id, {})
            for metric, sample in samples(result).items():
                entry = entries.get(metric)
                if not metric.endswith(".accuracy") or entry is None or not sample.outcomes:
                    continue
                fixed = compare_metric(metric, sample, entry, gate)
                reference = sequential.Reference(outcomes=entry.outcomes or None, value=entry.value, n=entry.n,
                                                 floor=entry.floor)
                rule = sequential.Rule(gate.alpha, gate.min_effect_for(metric))
                decision = sequential.replay(sample.outcomes, reference, rule) \
                    if fixed.state.value not in ("NOT_COMPARABLE",) else None
                rows.append(_replayed(label, result.cell_id, sample, entry, fixed.state.value, decision,
                                      "paired" if reference.paired else "unpaired"))
                if reference.paired and entry.value is not None and entry.n:
                    # The same figure as if its baseline had been imported (a value and n, no outcomes).
                    bare = dataclasses.replace(entry, outcomes=None)
                    fixed = compare_metric(metric, sample, bare, gate)
                    decision = sequential.replay(sample.outcomes, sequential.Reference(value=entry.value, n=entry.n),
                                                 rule)
                    rows.append(_replayed(label, result.cell_id, sample, entry, fixed.state.value, decision,
                                          "unpaired"))
    return rows


def _replayed(label, cell_id, sample, entry, fixed: str, decision, form: str) -> dict:
    budget = len(sample.outcomes)
    early = decision is not None and decision.asked < budget
    return {"run": label, "cell": cell_id, "form": form, "value": sample.value, "baseline": entry.value,
            "fixed_n": fixed, "sequential": decision.state if early else fixed,
            "asked": decision.asked if early else budget, "budget": budget}


# --- 4. the nightly's GPU-hours -------------------------------------------------------------------------

NIGHTLY = ("kimi", "glm5", "qwen3-next", "online-mxfp4")


def nightly_gpu_hours(to_verdict: list[dict], eval_share: float) -> list[dict]:
    """`harness plan`'s estimate of each nightly suite (one shard, no past durations: DEFAULT_CELL_S per cell
    times its GPUs), and the same with each cell's eval share of that time scaled by the fraction of questions
    (2) gives: a healthy cell's at the given discordance, a canary's (a planted defect: the 20-point row)."""
    from harness import pipeline

    def fraction(drop: float, discordance: float) -> float:
        row = next(r for r in to_verdict if r["drop"] == drop and r["discordance"] == discordance)
        return row["mean_asked"] / BUDGET

    rows = []
    for name in NIGHTLY:
        the_plan = pipeline.plan(name, suites_dir=ROOT / "suites", baselines_dir=ROOT / "baselines",
                                 cell_patterns=None)
        shard = pipeline.shards(the_plan, 1, None)[0]
        for discordance in (0.0, 0.02):
            hours = shard.estimated_gpu_s / 3600
            with_sequential = 0.0
            per_cell = {c.id: max(c.gpus, 1) for c in shard.cells}
            unit = shard.estimated_gpu_s / sum(per_cell.values())
            for cell in shard.cells:
                share = fraction(0.20 if cell.baseline_id else 0.0, discordance)
                with_sequential += unit * per_cell[cell.id] * (1 - eval_share + eval_share * share)
            rows.append({"suite": name, "cells": len(shard.cells),
                         "canaries": sum(bool(c.baseline_id) for c in shard.cells), "discordance": discordance,
                         "gpu_hours": round(hours, 2), "gpu_hours_sequential": round(with_sequential / 3600, 2)})
    return rows


# --- the report -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sims", type=int, default=10_000, help="A/A simulations per row (1)")
    parser.add_argument("--sims-drops", type=int, default=2_000, help="simulations per row of (2)")
    parser.add_argument("--eval-share", type=float, default=0.5,
                        help="the share of a cell's GPU time its evals take (the rest: launch, load, teardown)")
    parser.add_argument("--reports", type=Path, action="append", default=[], help="more run directories to replay")
    parser.add_argument("--out", type=Path, help="write every figure as JSON")
    args = parser.parse_args()
    rng = np.random.default_rng(26)
    tails = BinomialTails(BUDGET)
    report = {"alpha": ALPHA, "min_effect": MIN_EFFECT, "budget": BUDGET}

    print(f"1. A/A, a look after every question, alpha {ALPHA}, min_effect {MIN_EFFECT}, {BUDGET} questions, "
          f"{args.sims} simulations per row")
    print("| form | accuracy | discordant pairs | REGRESSED, sequential (95% CI) | REGRESSED, fixed-n | mean questions |")
    print("|---|---|---|---|---|---|")
    report["false_alarms"] = false_alarms(rng, args.sims, tails)
    for row in report["false_alarms"]:
        seq, fixed = row["sequential"], row["fixed_n"]
        print(f"| {row['form']} | {row['accuracy']} | {'-' if row['discordance'] is None else row['discordance']} | "
              f"{seq['rate']:.4f} ({seq['ci95'][0]:.4f}-{seq['ci95'][1]:.4f}) | {fixed['rate']:.4f} | "
              f"{row['mean_asked']:.0f} |")

    print(f"\n2. Questions to a verdict (paired, accuracy 0.94, {args.sims_drops} simulations per row)")
    print("| discordant pairs | true drop | mean questions | p90 | stopped early | REGRESSED, sequential | "
          "REGRESSED, fixed-n (power) | same verdict |")
    print("|---|---|---|---|---|---|---|---|")
    report["to_verdict"] = questions_to_verdict(rng, args.sims_drops, tails)
    for row in report["to_verdict"]:
        print(f"| {row['discordance']} | {row['drop'] * 100:g} points | {row['mean_asked']:.0f} | "
              f"{row['p90_asked']:.0f} | {row['stopped_early']:.3f} | {row['regressed_sequential']:.4f} | "
              f"{row['regressed_fixed_n']:.4f} | {row['agree']:.4f} |")

    print("\n3. Recorded runs replayed in the fixed order")
    print("| run | cell | form | accuracy / baseline | fixed-n | sequential | questions |")
    print("|---|---|---|---|---|---|---|")
    report["replays"] = replay_runs(args.reports)
    for row in report["replays"]:
        print(f"| {row['run']} | `{row['cell']}` | {row['form']} | {row['value']:.3f} / {row['baseline']:.3f} | "
              f"{row['fixed_n']} | {row['sequential']} | {row['asked']} of {row['budget']} |")
    replays = report["replays"]
    disagree = [r for r in replays if r["fixed_n"] != r["sequential"]]
    asked, budget = sum(r["asked"] for r in replays), sum(r["budget"] for r in replays)
    print(f"{len(replays)} figures, {len(disagree)} disagreements; {asked} of {budget} questions asked "
          f"({1 - asked / budget:.1%} saved)")

    print(f"\n4. The nightly's GPU-hours (harness plan, one shard; eval share of a cell's time {args.eval_share})")
    print("| suite | cells (canaries) | discordant pairs of a healthy cell | GPU-hours | with --sequential |")
    print("|---|---|---|---|---|")
    report["gpu_hours"] = nightly_gpu_hours(report["to_verdict"], args.eval_share)
    for row in report["gpu_hours"]:
        print(f"| {row['suite']} | {row['cells']} ({row['canaries']}) | {row['discordance']} | {row['gpu_hours']} | "
              f"{row['gpu_hours_sequential']} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
