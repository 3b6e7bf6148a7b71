"""Statistics of the accuracy gate: pure functions, exact where it matters.

Facts: ../shared/reference/evals.md ("Statistics of a gate"). The paired exact McNemar test is
used when both sides keep per-question outcomes; otherwise an unpaired one-sided
two-proportion z-test on the counts. Wilson intervals are reported beside the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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


def _normal_upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion_drop(p_before: float, n_before: int, p_now: float, n_now: int) -> float:
    """One-sided pooled two-proportion z-test p-value for p_now < p_before."""
    if n_before <= 0 or n_now <= 0:
        raise ValueError("two_proportion_drop needs n > 0 on both sides")
    pooled = (p_before * n_before + p_now * n_now) / (n_before + n_now)
    variance = pooled * (1.0 - pooled) * (1.0 / n_before + 1.0 / n_now)
    if variance <= 0.0:
        # Both sides all right or all wrong: no evidence either way unless they differ.
        return 1.0 if p_now >= p_before else 0.0
    return _normal_upper_tail((p_before - p_now) / math.sqrt(variance))


def two_proportion_gain(p_before: float, n_before: int, p_now: float, n_now: int) -> float:
    """One-sided pooled two-proportion z-test p-value for p_now > p_before."""
    return two_proportion_drop(p_now, n_now, p_before, n_before)


def wilson_interval(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
