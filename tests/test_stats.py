"""The gate's statistics against first principles (exact binomial sums) and known values."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.stats import (
    PairedCounts,
    binomial_upper_tail,
    fisher_exact_drop,
    fisher_exact_gain,
    mcnemar_exact_drop,
    mcnemar_exact_gain,
    pair_outcomes,
    standard_error,
    wilson_interval,
)


def brute_force_upper_tail(k: int, n: int) -> Fraction:
    """P(X >= k) by enumerating all 2^n outcomes (small n only)."""
    hits = sum(1 for bits in itertools.product((0, 1), repeat=n) if sum(bits) >= k)
    return Fraction(hits, 2 ** n)


@pytest.mark.parametrize("n", range(0, 13))
def test_binomial_tail_equals_enumeration(n):
    for k in range(0, n + 2):
        assert binomial_upper_tail(k, n) == pytest.approx(float(brute_force_upper_tail(k, n)), abs=1e-15)


def test_binomial_tail_survives_large_n():
    # 2**1319 overflows a float; the integer route must not.
    assert binomial_upper_tail(660, 1319) == pytest.approx(0.5, abs=0.02)
    assert 0.0 < binomial_upper_tail(1000, 1319) < 1e-60


@given(b=st.integers(0, 400), c=st.integers(0, 400))
def test_mcnemar_is_a_probability_and_symmetric(b, c):
    counts = PairedCounts(100, b, c, 10)
    drop, gain = mcnemar_exact_drop(counts), mcnemar_exact_gain(counts)
    assert 0.0 <= drop <= 1.0 and 0.0 <= gain <= 1.0
    assert drop == pytest.approx(mcnemar_exact_gain(PairedCounts(100, c, b, 10)), rel=1e-12, abs=1e-300)
    if b + c:
        # The two one-sided tails overlap at exactly P(B = b).
        exact = math.comb(b + c, b) / 2 ** (b + c)
        assert drop + gain == pytest.approx(1.0 + exact, rel=1e-9)


@given(b=st.integers(0, 200), c=st.integers(0, 200))
def test_more_losses_means_smaller_drop_p(b, c):
    assert mcnemar_exact_drop(PairedCounts(0, b + 1, c, 0)) <= mcnemar_exact_drop(PairedCounts(0, b, c, 0))


@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_identical_outcomes_give_no_evidence(outcomes):
    table = {str(i): v for i, v in enumerate(outcomes)}
    counts = pair_outcomes(table, dict(table))
    assert counts.b == counts.c == 0
    assert mcnemar_exact_drop(counts) == 1.0 and mcnemar_exact_gain(counts) == 1.0


def test_pair_outcomes_counts_the_table():
    before = {"a": True, "b": True, "c": False, "d": False, "e": True}
    now = {"a": True, "b": False, "c": True, "d": False, "z": True}
    assert pair_outcomes(before, now) == PairedCounts(both_right=1, b=1, c=1, both_wrong=1)
    assert pair_outcomes({"x": True}, {"y": True}) is None


def test_fisher_exact_known_values():
    # Fisher's tea-tasting table (The Design of Experiments, 1935): 3 of 4 cups right on each side of a 4/4
    # split, one-sided p = 17/70. Here: before 1 of 4 right, now 3 of 4 (a gain), and the mirror image.
    assert fisher_exact_gain(0.25, 4, 0.75, 4) == pytest.approx(17 / 70, rel=1e-12)
    assert fisher_exact_drop(0.75, 4, 0.25, 4) == pytest.approx(17 / 70, rel=1e-12)
    # All 4 right against none: 1 / C(8, 4) = 1/70.
    assert fisher_exact_drop(1.0, 4, 0.0, 4) == pytest.approx(1 / 70, rel=1e-12)
    assert fisher_exact_drop(0.94, 1319, 0.94, 1319) > 0.5
    assert fisher_exact_drop(1.0, 10, 1.0, 10) == 1.0


def test_fisher_exact_degenerate_sides():
    with pytest.raises(ValueError):
        fisher_exact_drop(0.5, 0, 0.5, 10)


def _hypergeometric_cdf_exact(k: int, population: int, marked: int, draws: int) -> float:
    """P(X <= k) in integers: the definition, summed term by term."""
    low = max(0, draws - (population - marked))
    total = sum(math.comb(marked, j) * math.comb(population - marked, draws - j) for j in range(low, k + 1))
    return total / math.comb(population, draws)


@settings(max_examples=200, deadline=None)
@given(n_before=st.integers(1, 1500), n_now=st.integers(1, 1500), a=st.floats(0, 1), b=st.floats(0, 1))
def test_fisher_exact_equals_the_hypergeometric_sum_in_integers(n_before, n_now, a, b):
    right_before, right_now = round(a * n_before), round(b * n_now)
    exact = _hypergeometric_cdf_exact(right_now, n_before + n_now, right_before + right_now, n_now)
    p = fisher_exact_drop(right_before / n_before, n_before, right_now / n_now, n_now)
    assert p == pytest.approx(exact, rel=1e-9, abs=1e-300)
    # The two one-sided p-values overlap in the observed table's own probability: they sum to 1 + P(table).
    gain = fisher_exact_gain(right_before / n_before, n_before, right_now / n_now, n_now)
    assert p + gain >= 1.0 - 1e-12


@settings(max_examples=50, deadline=None)
@given(n_before=st.integers(1, 400), n_now=st.integers(1, 400), a=st.floats(0, 1))
def test_fisher_exact_drop_grows_with_the_answers_right_now(n_before, n_now, a):
    """Fewer right now is only more significant (benchmarks/bench_sequential.py finds critical counts by
    bisection on it)."""
    right_before = round(a * n_before)
    p = [fisher_exact_drop(right_before / n_before, n_before, k / n_now, n_now) for k in range(n_now + 1)]
    assert all(x <= y * (1 + 1e-12) for x, y in zip(p, p[1:]))


def test_fisher_exact_equals_scipy():
    stats = pytest.importorskip("scipy.stats")
    for right_before, n_before, right_now, n_now in [(1240, 1319, 1200, 1319), (1240, 1319, 180, 200),
                                                     (100, 198, 80, 198), (5, 1319, 0, 200)]:
        table = [[right_before, n_before - right_before], [right_now, n_now - right_now]]
        expected = stats.fisher_exact(table, alternative="greater").pvalue
        assert fisher_exact_drop(right_before / n_before, n_before, right_now / n_now, n_now) == pytest.approx(
            expected, rel=1e-9)


def test_wilson_known_value():
    low, high = wilson_interval(0.5, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson_interval(1.0, 20)[1] == 1.0 and wilson_interval(0.0, 20)[0] == 0.0


def test_standard_error_matches_the_reference():
    # ../shared/reference/evals.md: GSM8K n=1319, p=0.94 -> 0.0065; GPQA n=198, p=0.6 -> 0.035.
    assert standard_error(0.94, 1319) == pytest.approx(0.0065, abs=1e-4)
    assert standard_error(0.6, 198) == pytest.approx(0.035, abs=1e-3)
