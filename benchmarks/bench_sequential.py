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

import math
import sys
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
    drop = capital(x, 0.5, -1, alpha) >= 1.0 / alpha
    gain = capital(x, 0.5, +1, alpha) >= 1.0 / alpha
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
