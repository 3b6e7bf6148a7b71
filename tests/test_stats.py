"""The gate's statistics against first principles (exact binomial sums) and known values."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.stats import (
    PairedCounts,
    binomial_upper_tail,
    mcnemar_exact_drop,
    mcnemar_exact_gain,
    pair_outcomes,
    standard_error,
    two_proportion_drop,
    two_proportion_gain,
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


def test_two_proportion_known_value():
    # 0.94 vs 0.92 on 1319 each: z = 0.02 / sqrt(0.93 * 0.07 * 2 / 1319) = 2.0131, one-sided p = 0.02205.
    assert two_proportion_drop(0.94, 1319, 0.92, 1319) == pytest.approx(0.02205, abs=2e-5)
    assert two_proportion_gain(0.92, 1319, 0.94, 1319) == pytest.approx(0.02205, abs=2e-5)
    assert two_proportion_drop(0.94, 1319, 0.94, 1319) == pytest.approx(0.5)


def test_two_proportion_degenerate_sides():
    assert two_proportion_drop(1.0, 10, 1.0, 10) == 1.0
    with pytest.raises(ValueError):
        two_proportion_drop(0.5, 0, 0.5, 10)


@given(p1=st.floats(0.01, 0.99), p2=st.floats(0.01, 0.99), n=st.integers(10, 5000))
def test_two_proportion_tails_are_complementary(p1, p2, n):
    assert two_proportion_drop(p1, n, p2, n) + two_proportion_gain(p1, n, p2, n) == pytest.approx(1.0)


def test_wilson_known_value():
    low, high = wilson_interval(0.5, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson_interval(1.0, 20)[1] == 1.0 and wilson_interval(0.0, 20)[0] == 0.0


def test_standard_error_matches_the_reference():
    # ../shared/reference/evals.md: GSM8K n=1319, p=0.94 -> 0.0065; GPQA n=198, p=0.6 -> 0.035.
    assert standard_error(0.94, 1319) == pytest.approx(0.0065, abs=1e-4)
    assert standard_error(0.6, 198) == pytest.approx(0.035, abs=1e-3)
