"""Statistics of the accuracy gate: pure functions, exact where it matters.

Facts: ../shared/reference/evals.md ("Statistics of a gate"). The paired exact McNemar test is
used when both sides keep per-question outcomes; otherwise an unpaired one-sided Fisher exact test
on the counts (conditional, so its size never exceeds alpha). Wilson intervals are reported beside
the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass


def standard_error(p: float, n: int) -> float:
    """SE of an accuracy p measured on n questions."""
    if n <= 0:
        return float("nan")
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def binomial_upper_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), computed exactly in integers."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    # Python ints are exact; true division of two ints rounds once, so n in the thousands is safe.
    return sum(math.comb(n, i) for i in range(k, n + 1)) / (1 << n)


@dataclass(frozen=True)
class PairedCounts:
    """Discordant pairs of a paired comparison: b = right before, wrong now; c = the reverse."""

    both_right: int
    b: int
    c: int
    both_wrong: int

    @property
    def n(self) -> int:
        return self.both_right + self.b + self.c + self.both_wrong


def pair_outcomes(baseline: Mapping[str, bool], current: Mapping[str, bool]) -> PairedCounts | None:
    """Count the 2x2 table over the questions both sides answered; None if they share none."""
    common = baseline.keys() & current.keys()
    if not common:
        return None
    both_right = b = c = both_wrong = 0
    for qid in common:
        before, now = bool(baseline[qid]), bool(current[qid])
        if before and now:
            both_right += 1
        elif before:
            b += 1
        elif now:
            c += 1
        else:
            both_wrong += 1
    return PairedCounts(both_right, b, c, both_wrong)


def mcnemar_exact_drop(counts: PairedCounts) -> float:
    """One-sided exact McNemar p-value for "accuracy dropped": P(B >= b | b + c, 1/2)."""
    return binomial_upper_tail(counts.b, counts.b + counts.c)


def mcnemar_exact_gain(counts: PairedCounts) -> float:
    """One-sided exact McNemar p-value for "accuracy rose": P(C >= c | b + c, 1/2)."""
    return binomial_upper_tail(counts.c, counts.b + counts.c)


def right_answers(value: float, n: int) -> int:
    """The number right behind an accuracy measured on n questions (an imported value may be rounded)."""
    return min(max(round(value * n), 0), n)


def _hypergeometric_lower_tail(k: int, population: int, marked: int, draws: int) -> float:
    """P(X <= k) for X ~ Hypergeometric(population, marked, draws): the shorter tail summed from its far end
    by the terms' ratio recurrence (double precision; the first term from log-gamma)."""
    low, high = max(0, draws - (population - marked)), min(draws, marked)
    if k < low:
        return 0.0
    if k >= high:
        return 1.0
    mean = draws * marked / population
    if k > mean:  # the upper tail is the shorter one
        return 1.0 - _hypergeometric_upper_tail(k + 1, population, marked, draws)
    total, term, j = 0.0, _hypergeometric_log_pmf(k, population, marked, draws), k
    term = math.exp(term)
    while j >= low and term > 0.0:
        total += term
        if term < 1e-17 * total:
            break
        # pmf(j - 1) / pmf(j) = j (population - marked - draws + j) / ((marked - j + 1) (draws - j + 1))
        term *= j * (population - marked - draws + j) / ((marked - j + 1) * (draws - j + 1))
        j -= 1
    return min(total, 1.0)


def _hypergeometric_upper_tail(k: int, population: int, marked: int, draws: int) -> float:
    """P(X >= k): the lower tail of the unmarked draws, which is the same count seen from the other side."""
    return _hypergeometric_lower_tail(draws - k, population, population - marked, draws)


def _hypergeometric_log_pmf(k: int, population: int, marked: int, draws: int) -> float:
    def log_comb(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)
    return log_comb(marked, k) + log_comb(population - marked, draws - k) - log_comb(population, draws)


def fisher_exact_drop(p_before: float, n_before: int, p_now: float, n_now: int) -> float:
    """One-sided Fisher exact p-value for "accuracy dropped" between two independent samples (an imported
    baseline's value and n, today's value and n): P(X <= right now | both sides' right answers), X
    hypergeometric. Conditional, so its size is at most alpha at every accuracy and every pair of sizes; the
    pooled z-test it replaced reached 0.0103 at alpha 0.01 on 1319 vs 1319 questions and 0.0165 on 1319 vs 200
    (benchmarks/bench_sequential.py, exact sums)."""
    if n_before <= 0 or n_now <= 0:
        raise ValueError("fisher_exact_drop needs n > 0 on both sides")
    right_before, right_now = right_answers(p_before, n_before), right_answers(p_now, n_now)
    return _hypergeometric_lower_tail(right_now, n_before + n_now, right_before + right_now, n_now)


def fisher_exact_gain(p_before: float, n_before: int, p_now: float, n_now: int) -> float:
    """One-sided Fisher exact p-value for "accuracy rose"."""
    return fisher_exact_drop(p_now, n_now, p_before, n_before)


def wilson_interval(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- per-item values (the numerics gate): Student's t, paired differences -------------------------------

def _continued_fraction_beta(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 400):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction_beta(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction_beta(b, a, 1.0 - x) / b


def student_t_upper_tail(t: float, df: float) -> float:
    """P(T >= t) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on the exact tail: a few microseconds, and never far off)."""
    if not 0.0 < p < 1.0:
        raise ValueError("student_t_quantile needs 0 < p < 1")
    return inverse_cdf(lambda t: 1.0 - student_t_upper_tail(t, df), p, -1e3, 1e3, steps=200)


def inverse_cdf(cdf: Callable[[float], float], p: float, low: float, high: float, *, steps: int) -> float:
    """The x in [low, high] with cdf(x) = p, for a non-decreasing cdf, by `steps` bisections."""
    for _ in range(steps):
        middle = (low + high) / 2.0
        if cdf(middle) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


@dataclass(frozen=True)
class MeanEstimate:
    """The mean of per-item values (e.g. one value per sequence), its SE and a t-based 95% interval."""

    mean: float
    n: int
    stderr: float
    ci95: tuple[float, float]


def mean_estimate(values: list[float]) -> MeanEstimate:
    """Mean, SE and 95% t interval of independent per-item values (n >= 1; SE is nan for n == 1)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_estimate needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return MeanEstimate(mean, 1, float("nan"), (float("-inf"), float("inf")))
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    stderr = math.sqrt(variance / n)
    half = student_t_quantile(0.975, n - 1) * stderr
    return MeanEstimate(mean, n, stderr, (mean - half, mean + half))


@dataclass(frozen=True)
class PairedDifference:
    """Per-item differences (now - before) over the items both sides measured, with one-sided paired t-tests."""

    n: int
    mean_delta: float
    stderr: float
    p_increase: float  # H1: the mean rose
    p_decrease: float  # H1: the mean fell


def paired_difference(before: Mapping[str, float], now: Mapping[str, float]) -> PairedDifference | None:
    """The paired t-test of now against before on their common items; None when they share fewer than two.

    Identical differences on every item (zero spread) are certain evidence of a shift when they are not
    zero, and none when they are: an engine that computes bit-identical numbers run to run (A/A) gives
    exactly zero and never a false alarm.
    """
    common = sorted(before.keys() & now.keys())
    if len(common) < 2:
        return None
    deltas = [now[key] - before[key] for key in common]
    n = len(deltas)
    mean = math.fsum(deltas) / n
    spread = math.sqrt(math.fsum((d - mean) ** 2 for d in deltas) / (n - 1))
    stderr = spread / math.sqrt(n)
    if stderr == 0.0 or stderr < 1e-12 * abs(mean):
        p_up = 0.0 if mean > 0 else 1.0
        p_down = 0.0 if mean < 0 else 1.0
        return PairedDifference(n, mean, stderr, p_up, p_down)
    t = mean / stderr
    return PairedDifference(n, mean, stderr, student_t_upper_tail(t, n - 1), student_t_upper_tail(-t, n - 1))
