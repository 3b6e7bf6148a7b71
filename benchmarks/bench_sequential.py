"""The sequential gate (harness.sequential, issue 26): false alarms, questions to a verdict, replays of real runs.

    python benchmarks/bench_sequential.py [--sims 10000] [--sims-drops 2000] [--out FILE.json]

1. A/A under continuous monitoring (a look after every question): the rate of REGRESSED with its 95% Wilson
   interval, at several accuracies and discordance rates, beside the fixed-n gate's own rate (and, unpaired,
   the pooled z-test's that Fisher's exact test replaced). 1b: at a true drop of exactly min_effect, the rate of
   an early PASS, simulated and (paired) computed exactly by dynamic programming over the counts. 1c: the
   unpaired fixed-n tests' size and power summed exactly over both sides' binomial counts.
2. Questions to a verdict (mean, 90th percentile) for healthy cells and true drops of 1, 2, 5, 10 and 20 points
   on GSM8K's 1,319 questions, at discordance rates 0-2%, beside the fixed-n gate's power (REGRESSED rate) at the
   same alpha and the sequential gate's (early stop or the fixed-n test at the budget), and the fewest questions
   any alpha-level sequential test needs on average to pass a healthy cell (log(1/alpha) / KL_inf).
3. Real recorded outcomes (reports/, benchmarks/rig-runs/, tests/fixtures/history/): every run with
   per-question outcomes replayed in the fixed order against its baseline (baselines/<suite>.yaml), the
   sequential verdict against the fixed-n one, the questions saved.
4. The nightly's GPU-hours (`harness plan`'s per-cell estimates) with and without, from (2)'s figures.

The simulation is a numpy twin of harness.sequential's Monitor (every look, every question, vectorised over
simulations); tests/test_sequential.py checks the twin against the Monitor itself on random streams, paired
and unpaired. The unpaired twin calls harness.stats' Fisher test itself (cached per table).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import sequential, stats  # noqa: E402
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


def mixture_reject(counts: dict[float, np.ndarray], m: float, alpha: float) -> np.ndarray:
    """MixtureTest(m, +1, alpha).rejected at every look, from the running counts of each value: with constant
    bets the capital depends on the counts alone (logs, mean over the bets by log-sum-exp)."""
    logs = []
    for share in sequential.PASS_BET_SHARES:
        bet = share / m
        logs.append(sum(count * math.log1p(bet * (value - m)) for value, count in counts.items()))
    stacked = np.stack(logs)
    top = stacked.max(axis=0)
    log_capital = top + np.log(np.exp(stacked - top).mean(axis=0))
    return log_capital >= math.log(1.0 / alpha)


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
    small = mixture_reject({0.0: b, 0.5: t - b - c, 1.0: c}, (1.0 - min_effect) / 2.0, alpha)
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
    return {"asked": first + 1, "verdict": verdict, "fixed": at_budget, "early": any_decided,
            "pass_early": any_decided & (early >= 0)}


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

Z_ONE_SIDED = {0.01: 2.3263478740408408, 0.008: 2.4089155458154612, 0.05: 1.6448536269514722}


@functools.cache
def fisher_regressed(right_before: int, n_before: int, right_now: int, n_now: int, alpha: float,
                     min_effect: float = MIN_EFFECT) -> bool:
    """The gate's unpaired fixed-n rule (harness.compare): Fisher's exact test significant at alpha and the drop
    at least min_effect; harness.stats itself, cached (a simulation asks the same tables again and again)."""
    before, now = right_before / n_before, right_now / n_now
    delta = float(f"{now - before:.12g}")
    if not (delta < 0 and abs(delta) >= min_effect - 1e-12):
        return False
    return stats.fisher_exact_drop(before, n_before, now, n_now) < alpha


def z_regressed(right_before, n_before: int, right_now, n_now: int, alpha: float,
                min_effect: float = MIN_EFFECT) -> np.ndarray:
    """The pooled two-proportion z-test the unpaired gate used before Fisher's (vectorised)."""
    before, now = np.asarray(right_before) / n_before, np.asarray(right_now) / n_now
    pooled = (before * n_before + now * n_now) / (n_before + n_now)
    se = np.sqrt(pooled * (1 - pooled) * (1.0 / n_before + 1.0 / n_now))
    delta = now - before
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, -delta / se, np.where(delta < 0, np.inf, -np.inf))
    return (delta < 0) & (z > Z_ONE_SIDED[alpha]) & (np.abs(delta) >= min_effect - 1e-12)


def unpaired_run(baseline_right: np.ndarray, baseline_n: int, now: np.ndarray, alpha: float = ALPHA,
                 min_effect: float = MIN_EFFECT) -> dict[str, np.ndarray]:
    """The sequential gate against a value and n per row (harness.sequential's unpaired Monitor): early
    REGRESSED (the baseline's bound and the candidate's test at UNPAIRED_EARLY_SHARE * alpha / 2 each, and
    Fisher's test at alpha on the prefix), PASS (bound and test at alpha / 2), else Fisher's test at the budget
    at final_alpha. Also the fixed-n gate alone at the budget: Fisher's test at alpha, and the z-test it
    replaced."""
    sims, n = now.shape
    right = np.cumsum(now, axis=1)
    t = np.arange(1, n + 1)
    early_alpha = alpha * sequential.UNPAIRED_EARLY_SHARE
    final_alpha = sequential.final_alpha(sequential.Rule(alpha, min_effect), paired=False)
    margin = sequential.EARLY_MARGIN * min_effect
    drop = np.zeros((sims, n), dtype=bool)
    small = np.zeros((sims, n), dtype=bool)
    for right0 in np.unique(baseline_right):  # rows of one baseline count share its bounds
        rows = baseline_right == right0
        lower = sequential.clopper_pearson(int(right0), baseline_n, early_alpha / 2, -1)
        upper = sequential.clopper_pearson(int(right0), baseline_n, alpha / 2, +1)
        x = now[rows].astype(float)
        drop[rows] = capital(x, max(lower - margin, 0.0), -1, early_alpha / 2) >= 2.0 / early_alpha
        small[rows] = capital(x, max(upper - min_effect, 0.0), +1, alpha / 2) >= 2.0 / alpha
    fixed_regressed = np.zeros((sims, n), dtype=bool)
    delta = right / t - (baseline_right / baseline_n)[:, None]
    for row, look in zip(*np.nonzero((drop | small) & (delta <= -min_effect + 1e-9)), strict=True):
        fixed_regressed[row, look] = fisher_regressed(int(baseline_right[row]), baseline_n, int(right[row, look]),
                                                      int(look) + 1, alpha)
    regressed_now = drop & fixed_regressed
    decided = regressed_now | (small & ~fixed_regressed)
    any_decided = decided.any(axis=1)
    first = np.where(any_decided, decided.argmax(axis=1), n - 1)
    rows = np.arange(sims)
    final = np.array([fisher_regressed(int(k0), baseline_n, int(k1), n, final_alpha)
                      for k0, k1 in zip(baseline_right, right[:, -1], strict=True)])
    fisher = np.array([fisher_regressed(int(k0), baseline_n, int(k1), n, alpha)
                       for k0, k1 in zip(baseline_right, right[:, -1], strict=True)])
    verdict = np.where(any_decided, np.where(regressed_now[rows, first], -1, 0), np.where(final, -1, 0))
    return {"asked": first + 1, "verdict": verdict, "fixed": np.where(fisher, -1, 0),
            "z_test": np.where(z_regressed(baseline_right, baseline_n, right[:, -1], n, alpha), -1, 0),
            "early": any_decided, "pass_early": any_decided & ~regressed_now[rows, first]}


# --- 1. false alarms, 2. questions to a verdict -------------------------------------------------------

def unpaired_chunks(rng, sims: int, accuracy: float, drop: float = 0.0) -> dict[str, np.ndarray]:
    parts = []
    for begin in range(0, sims, 1000):
        size = min(1000, sims - begin)
        baseline_right = rng.binomial(BUDGET, accuracy, size=size)
        parts.append(unpaired_run(baseline_right, BUDGET, rng.random((size, BUDGET)) < accuracy - drop))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


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
        found = unpaired_chunks(rng, sims, accuracy)
        rows.append({"form": "unpaired", "accuracy": accuracy, "discordance": None,
                     "sequential": rate(int((found["verdict"] == -1).sum()), sims),
                     "fixed_n": rate(int((found["fixed"] == -1).sum()), sims),
                     "z_test": rate(int((found["z_test"] == -1).sum()), sims),
                     "mean_asked": float(found["asked"].mean()), "seconds": round(time.perf_counter() - start, 1)})
    return rows


def false_passes(rng, sims: int, tails: BinomialTails) -> list[dict]:
    """A true drop of exactly min_effect, looked at after every question: the rate of an early PASS (or
    IMPROVED) stop, which the PASS test bounds by alpha."""
    rows = []
    for discordance in (0.0, 0.02, 0.06):
        found = chunked(rng, sims, tails, accuracy=0.94, discordance=discordance, drop=MIN_EFFECT)
        rows.append({"form": "paired", "discordance": discordance, "pass_early": rate(int(found["pass_early"].sum()), sims),
                     "exact": mixture_crossing(discordance / 2 + MIN_EFFECT, discordance / 2, BUDGET)})
    found = unpaired_chunks(rng, sims, 0.94, drop=MIN_EFFECT)
    rows.append({"form": "unpaired", "discordance": None, "pass_early": rate(int(found["pass_early"].sum()), sims),
                 "exact": None})
    return rows


# --- exact figures: the fixed-n unpaired tests' size and power, the PASS test's crossing probability ------

def binomial_pmf(n: int, p: float) -> np.ndarray:
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    k = np.arange(n + 1)
    with np.errstate(divide="ignore"):
        log_pmf = log_fact[n] - log_fact[k] - log_fact[n - k] + k * np.log(p) + (n - k) * np.log1p(-p)
    return np.exp(log_pmf)


def fisher_critical(n_before: int, n_now: int, alpha: float) -> np.ndarray:
    """For each count right before, the most right now that Fisher's rule still calls REGRESSED (-1: none),
    by bisection: for a fixed count before, fewer right now is only more significant."""
    out = np.full(n_before + 1, -1)
    for right_before in range(n_before + 1):
        low, high = -1, n_now  # fisher_regressed holds at low (or low is -1), fails at high
        if not fisher_regressed(right_before, n_before, 0, n_now, alpha):
            continue
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fisher_regressed(right_before, n_before, middle, n_now, alpha) else (low, middle)
        out[right_before] = low
    return out


def fixed_n_exact(alpha: float) -> list[dict]:
    """The unpaired fixed-n tests' rejection rates summed exactly over both sides' binomial counts: size (no
    change, the largest over accuracies 0.02-0.98) and power (true drops from 0.94)."""
    rows = []
    final_alpha = sequential.final_alpha(sequential.Rule(alpha, MIN_EFFECT), paired=False)
    for n_before, n_now in ((1319, 1319), (1319, 200), (200, 1319), (200, 200)):
        before = np.arange(n_before + 1)[:, None]
        now = np.arange(n_now + 1)[None, :]
        tests = {"z": z_regressed(before, n_before, now, n_now, alpha),
                 "fisher": now <= fisher_critical(n_before, n_now, alpha)[:, None],
                 "fisher_final": now <= fisher_critical(n_before, n_now, final_alpha)[:, None]}

        def rejection(test: str, p_before: float, p_now: float, sizes=(n_before, n_now), tests=tests) -> float:
            return float((tests[test] * binomial_pmf(sizes[0], p_before)[:, None]
                          * binomial_pmf(sizes[1], p_now)[None, :]).sum())

        grid = np.round(np.arange(0.02, 0.99, 0.01), 2)
        row = {"n_before": n_before, "n_now": n_now}
        for test in tests:
            sizes = [rejection(test, p, p) for p in grid]
            worst = int(np.argmax(sizes))
            row[test] = {"max_size": sizes[worst], "at": float(grid[worst]),
                         "size_at": {str(p): rejection(test, p, p) for p in (0.5, 0.8, 0.94)},
                         "power_from_0.94": {str(d): rejection(test, 0.94, 0.94 - d) for d in (0.01, 0.02, 0.03, 0.05)}}
        rows.append(row)
    return rows


def mixture_crossing(p_lost: float, p_gained: float, horizon: int, alpha: float = ALPHA,
                     min_effect: float = MIN_EFFECT, cap: int = 120) -> dict:
    """P(the paired PASS test ever rejects within `horizon` questions) when each question is lost (right
    before, wrong now) with p_lost and gained with p_gained, computed exactly by dynamic programming over the
    counts (b lost, c gained): the capital is a function of (t, b, c). Counts beyond `cap` are not followed;
    the probability of ever reaching them is returned as `escaped` (an upper bound on what that omits)."""
    m = (1.0 - min_effect) / 2.0
    b = np.arange(cap + 1)[:, None]
    c = np.arange(cap + 1)[None, :]
    alive = np.zeros((cap + 1, cap + 1))
    alive[0, 0] = 1.0
    crossed = escaped = 0.0
    for t in range(1, horizon + 1):
        step = alive * (1.0 - p_lost - p_gained)
        step[1:, :] += alive[:-1, :] * p_lost
        step[:, 1:] += alive[:, :-1] * p_gained
        escaped += float(alive[-1, :].sum() * p_lost + alive[:, -1].sum() * p_gained)
        rejected = mixture_reject({0.0: b, 0.5: t - b - c, 1.0: c}, m, alpha) & (b + c <= t)
        crossed += float(step[rejected].sum())
        alive = np.where(rejected, 0.0, step)
    return {"crossed": crossed, "escaped": escaped}


DROPS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.10, 0.20)
DISCORDANCES = (0.0, 0.0025, 0.005, 0.01, 0.02)


def fewest_questions(discordance: float, alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> float:
    """log(1/alpha) / KL_inf: about the fewest questions on average that any alpha-level sequential test needs to
    rule out a drop of min_effect in a healthy cell (answers lost and gained at discordance / 2 each; Wald's
    bound, the KL_inf of Honda and Takemura's dual form: the best constant bet's expected log-growth)."""
    m = (1.0 - min_effect) / 2.0
    bets = np.linspace(0.0, 1.0 / m, 200_001)[:-1]
    growth = (discordance / 2 * np.log1p(-bets * m) + (1 - discordance) * np.log1p(bets * (0.5 - m))
              + discordance / 2 * np.log1p(bets * (1 - m)))
    return math.log(1.0 / alpha) / float(growth.max())


def questions_to_verdict(rng, sims: int, tails: BinomialTails) -> list[dict]:
    rows = []
    for discordance in DISCORDANCES:
        for drop in DROPS:
            found = chunked(rng, sims, tails, accuracy=0.94, discordance=discordance, drop=drop)
            rows.append({"accuracy": 0.94, "discordance": discordance, "drop": drop,
                         "mean_asked": float(found["asked"].mean()),
                         "p90_asked": float(np.percentile(found["asked"], 90)),
                         "stopped_early": float(found["early"].mean()),
                         "pass_early": float(found["pass_early"].mean()),
                         "regressed_sequential": float((found["verdict"] == -1).mean()),
                         "regressed_fixed_n": float((found["fixed"] == -1).mean()),
                         "agree": float((found["verdict"] == found["fixed"]).mean()),
                         "fewest": fewest_questions(discordance) if drop == 0.0 else None})
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
        for discordance in DISCORDANCES:
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
    print("| form | accuracy | discordant pairs | REGRESSED, sequential (95% CI) | REGRESSED, fixed-n alone (95% CI) | "
          "the z-test it replaced | mean questions |")
    print("|---|---|---|---|---|---|---|")
    report["false_alarms"] = false_alarms(rng, args.sims, tails)
    for row in report["false_alarms"]:
        seq, fixed, z = row["sequential"], row["fixed_n"], row.get("z_test")
        print(f"| {row['form']} | {row['accuracy']} | {'-' if row['discordance'] is None else row['discordance']} | "
              f"{seq['rate']:.4f} ({seq['ci95'][0]:.4f}-{seq['ci95'][1]:.4f}) | "
              f"{fixed['rate']:.4f} ({fixed['ci95'][0]:.4f}-{fixed['ci95'][1]:.4f}) | "
              f"{'-' if z is None else format(z['rate'], '.4f')} | {row['mean_asked']:.0f} |")
    print(f"\n1b. A true drop of min_effect ({MIN_EFFECT}), accuracy 0.94: early PASS (or IMPROVED) stops, "
          f"{args.sims} simulations per row; paired also exactly (dynamic programming over the counts)")
    print("| form | discordant pairs | early PASS, simulated (95% CI) | exactly | mass not followed |")
    print("|---|---|---|---|---|")
    report["false_passes"] = false_passes(rng, args.sims, tails)
    for row in report["false_passes"]:
        found, exact = row["pass_early"], row["exact"]
        print(f"| {row['form']} | {'-' if row['discordance'] is None else row['discordance']} | "
              f"{found['rate']:.4f} ({found['ci95'][0]:.4f}-{found['ci95'][1]:.4f}) | "
              f"{'-' if exact is None else format(exact['crossed'], '.5f')} | "
              f"{'-' if exact is None else format(exact['escaped'], '.1e')} |")
    print(f"\n1c. The unpaired fixed-n tests, summed exactly over both sides' counts (alpha {ALPHA}; size: the largest "
          "rate of REGRESSED with no change over accuracies 0.02-0.98; power: from 0.94)")
    print("| questions (baseline, now) | test | largest size (at accuracy) | size at 0.5 / 0.8 / 0.94 | "
          "power at 1 / 2 / 3 / 5 points |")
    print("|---|---|---|---|---|")
    report["fixed_n_exact"] = fixed_n_exact(ALPHA)
    names = {"z": "pooled z (before)", "fisher": "Fisher exact", "fisher_final": "Fisher exact at the final alpha"}
    for row in report["fixed_n_exact"]:
        for test, name in names.items():
            found = row[test]
            print(f"| {row['n_before']}, {row['n_now']} | {name} | {found['max_size']:.5f} ({found['at']}) | "
                  + " / ".join(f"{v:.5f}" for v in found["size_at"].values()) + " | "
                  + " / ".join(f"{v:.3f}" for v in found["power_from_0.94"].values()) + " |")

    print(f"\n2. Questions to a verdict (paired, accuracy 0.94, {args.sims_drops} simulations per row)")
    print("| discordant pairs | true drop | mean questions | p90 | stopped early | early PASS | "
          "REGRESSED, sequential | REGRESSED, fixed-n (power) | same verdict | fewest possible (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    report["to_verdict"] = questions_to_verdict(rng, args.sims_drops, tails)
    for row in report["to_verdict"]:
        print(f"| {row['discordance']} | {row['drop'] * 100:g} points | {row['mean_asked']:.0f} | "
              f"{row['p90_asked']:.0f} | {row['stopped_early']:.3f} | {row['pass_early']:.4f} | "
              f"{row['regressed_sequential']:.4f} | {row['regressed_fixed_n']:.4f} | {row['agree']:.4f} | "
              f"{'-' if row['fewest'] is None else format(row['fewest'], '.0f')} |")

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
