"""The sequential accuracy gate: decide a cell's verdict before its last question (pure functions).

An eval under `gate.sequential` asks its questions in a fixed order (SHA-256 of each question id, so any
prefix is a random sample of the questions and the protocol is unchanged) and, after every answer that
extends the answered prefix, asks three anytime-valid questions of that prefix against the baseline:

- REGRESSED: is a drop of more than half of `min_effect` significant at `alpha`? (H0: accuracy dropped by
  min_effect / 2 or less.) It stops the eval only when, besides, today's fixed-n rule says REGRESSED on the
  questions asked (McNemar or Fisher's exact test significant at `alpha`, the drop at least `min_effect`):
  a sequential REGRESSED is always a fixed-n one. Why half: a look after every question sees the running drop
  cross `min_effect` more often than the last look alone does; with H0 at 0 instead, true drops of half the
  minimum effect (no regression) came out REGRESSED 2.1% of the time against the fixed-n gate's 0.9%; with H0 at
  half, as often as fixed-n at every drop measured (benchmarks/bench_sequential.py, docs/gate.md).
- PASS: is a drop of `min_effect` or more ruled out at `alpha`? (H0: accuracy dropped by min_effect or more.)
  The verdict is IMPROVED when a gain is also significant anytime and today's rule says IMPROVED on the prefix.
- else go on; at the budget the fixed-n gate decides, as without this module (unpaired: at the part of alpha
  the early looks left, `final_alpha`).

The REGRESSED and IMPROVED tests are betting test martingales for the mean of values in [0, 1] (Waudby-Smith and
Ramdas 2023, "Estimating means of bounded random variables by betting", JRSS-B): capital
prod(1 + lambda_i (x_i - m)), with predictable-mixture empirical-Bernstein bets truncated at half the largest safe
bet, exactly as in the authors' `confseq` package (`betting_mart` with `lambda_predmix_eb`, `trunc_scale=1/2`).
The paired PASS test is their mixture of constant bets (`diversified_betting_mart`, `MixtureTest`), whose
largest bet is close to the likelihood ratio against "no answer flips": a cell whose answers never flip is
decided after 533 questions, not ~915. By Ville's inequality P(capital ever reaches 1/alpha | H0) <= alpha,
however often one looks. Paired (the baseline kept per-question outcomes): x = (now - before + 1) / 2 in
{0, 1/2, 1}, whose mean is (delta + 1) / 2. Unpaired (an imported baseline: a value and n): the candidate's own
outcomes against the baseline's exact one-sided Clopper-Pearson bounds, alpha split between the two sides; its
early REGRESSED looks spend UNPAIRED_EARLY_SHARE of alpha and the fixed-n test at the budget the rest, so that
its REGRESSED rate is at most alpha in all (union bound; Fisher's exact test keeps its own size).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.stats import (
    PairedCounts,
    fisher_exact_drop,
    fisher_exact_gain,
    inverse_cdf,
    mcnemar_exact_drop,
    mcnemar_exact_gain,
    regularized_beta,
    right_answers,
)

ORDER = "sha256(question id)"  # the order questions are asked in, recorded with every sequential eval
TRUNCATION = 0.5  # confseq's trunc_scale: a bet is at most this share of the largest one that cannot go broke
PRIOR_MEAN, PRIOR_VARIANCE, FAKE_OBSERVATIONS = 0.5, 0.25, 1  # confseq's lambda_predmix_eb defaults

REGRESSED, PASS, IMPROVED = "REGRESSED", "PASS", "IMPROVED"
# An early REGRESSED (IMPROVED) needs significance against a change of this share of min_effect, not of zero.
EARLY_MARGIN = 0.5
# Unpaired form: the share of alpha its early REGRESSED looks spend (the baseline's bound and the candidate's
# test, half each); the fixed-n test at the budget gets the rest, so that P(REGRESSED) <= alpha in all, by a
# union bound (the paired form keeps alpha at the budget: docs/gate.md says why).
UNPAIRED_EARLY_SHARE = 0.2
# The PASS test (H0: a drop of min_effect or more): an equal-weight mixture of constant bets, each this share of
# the largest bet that cannot go broke. Near 1 the bet is the likelihood ratio against "no answer flips" (a
# healthy deterministic cell decided after 533 questions instead of ~915); the smaller ones keep a cell whose
# answers flip now and then from losing what it won (docs/gate.md, "Questions to a verdict").
PASS_BET_SHARES = (0.45, 0.65, 0.85, 0.95, 0.99)


def order_key(question_id: str) -> str:
    """A question's place in the fixed random order: the permutation depends on the ids alone."""
    return hashlib.sha256(question_id.encode()).hexdigest()


def in_order(question_ids: Iterable[str]) -> list[str]:
    return sorted(question_ids, key=order_key)


# --- betting test martingales --------------------------------------------------------------------------

class BetSizer:
    """confseq's `lambda_predmix_eb` (truncation inf, fixed_n None), one observation at a time: the bet for
    the next value from the regularized mean and variance of the values seen."""

    def __init__(self, alpha: float):
        self.log_inverse_alpha = math.log(1.0 / alpha)
        self.t = 0
        self.total = 0.0
        self.squares = 0.0
        self.variance = PRIOR_VARIANCE  # sigma2_{t-1}

    def next_bet(self) -> float:
        t = self.t + 1
        if self.variance <= 0.0:
            return math.inf
        return math.sqrt(2.0 * self.log_inverse_alpha / (t * math.log(1.0 + t) * self.variance))

    def observe(self, x: float) -> None:
        self.t += 1
        self.total += x
        mean = min((FAKE_OBSERVATIONS * PRIOR_MEAN + self.total) / (self.t + FAKE_OBSERVATIONS), 1.0)
        self.squares += (x - mean) ** 2
        self.variance = (FAKE_OBSERVATIONS * PRIOR_VARIANCE + self.squares) / (self.t + FAKE_OBSERVATIONS)


@dataclass
class BettingTest:
    """One anytime-valid one-sided test on the mean of values in [0, 1]: `side` +1 tests H0: mean <= m
    (evidence that it is above), -1 tests H0: mean >= m. `capital` is the test martingale (confseq's positive
    or negative capital process); `best` its running maximum, so 1 / best is an anytime-valid p-value."""

    null_mean: float
    side: int
    alpha: float
    capital: float = 1.0
    best: float = 1.0
    sizer: BetSizer = field(init=False)

    def __post_init__(self) -> None:
        self.sizer = BetSizer(self.alpha)

    def _bet(self) -> float:
        raw, m = self.sizer.next_bet(), self.null_mean
        up, down = (m, 1.0 - m) if self.side > 0 else (1.0 - m, m)  # how far x can fall (rise) against the bet
        with_cap = min(raw, TRUNCATION / up) if up > 0 else raw
        return max(with_cap, -TRUNCATION / down) if down > 0 else with_cap

    def observe(self, x: float) -> None:
        bet = self._bet()
        step = self.side * (x - self.null_mean)
        factor = 1.0 if (math.isinf(bet) and step == 0.0) else 1.0 + bet * step
        self.capital = 0.0 if math.isnan(factor) else self.capital * factor
        self.best = max(self.best, self.capital)
        self.sizer.observe(x)

    @property
    def p_value(self) -> float:
        return min(1.0, 1.0 / self.best) if self.best > 0 else 1.0

    @property
    def rejected(self) -> bool:
        return self.capital >= 1.0 / self.alpha


def capital_process(values: Iterable[float], null_mean: float, side: int, alpha: float) -> list[float]:
    """The whole capital process of one test (what confseq's betting_mart returns for theta 1 or 0)."""
    test = BettingTest(null_mean, side, alpha)
    out = []
    for x in values:
        test.observe(x)
        out.append(test.capital)
    return out


@dataclass
class MixtureTest:
    """An anytime-valid one-sided test on the mean of values in [0, 1] by an equal-weight mixture of constant
    bets (the "diversified Kelly" betting of Waudby-Smith and Ramdas 2023; confseq's diversified_betting_mart
    with constant bets, tests/golden/confseq/mixture.json.gz): capital
    mean_k prod_i (1 + lambda_k side (x_i - m)), lambda_k = share_k / (the most x can fall against the bet).
    Each product is a nonnegative supermartingale under H0 (side +1: mean <= m), so is their mean, and Ville's
    inequality bounds P(capital ever reaches 1/alpha) by alpha. With constant bets the capital depends on the
    counts of the values alone, not their order: exactly computable (tests/test_sequential.py)."""

    null_mean: float
    side: int
    alpha: float
    shares: tuple[float, ...] = PASS_BET_SHARES
    bets: list[float] = field(init=False)
    log_capitals: list[float] = field(init=False)
    best: float = 1.0

    def __post_init__(self) -> None:
        against = self.null_mean if self.side > 0 else 1.0 - self.null_mean
        self.bets = [share / against if against > 0 else 0.0 for share in self.shares]
        self.log_capitals = [0.0] * len(self.shares)

    def observe(self, x: float) -> None:
        step = self.side * (x - self.null_mean)
        for k, bet in enumerate(self.bets):
            factor = 1.0 + bet * step
            self.log_capitals[k] = self.log_capitals[k] + math.log(factor) if factor > 0 else -math.inf
        self.best = max(self.best, self.capital)

    @property
    def capital(self) -> float:
        top = max(self.log_capitals)
        if top == -math.inf:
            return 0.0
        log_mean = top + math.log(math.fsum(math.exp(value - top) for value in self.log_capitals) / len(self.bets))
        return math.exp(log_mean) if log_mean < 709.78 else math.inf  # beyond a float: rejected long ago

    @property
    def p_value(self) -> float:
        return min(1.0, 1.0 / self.best)

    @property
    def rejected(self) -> bool:
        return self.capital >= 1.0 / self.alpha


# --- exact binomial bounds of an imported baseline -------------------------------------------------------

def clopper_pearson(successes: int, n: int, alpha: float, side: int) -> float:
    """The exact one-sided (1 - alpha) bound of a binomial proportion: upper for side +1, lower for -1."""
    if side < 0:
        if successes <= 0:
            return 0.0
        return _beta_quantile(alpha, successes, n - successes + 1)
    if successes >= n:
        return 1.0
    return _beta_quantile(1.0 - alpha, successes + 1, n - successes)


def _beta_quantile(p: float, a: float, b: float) -> float:
    return inverse_cdf(lambda x: regularized_beta(a, b, x), p, 0.0, 1.0, steps=80)


# --- the rule ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """What a sequential eval is compared with: the baseline's per-question outcomes (paired), else its value
    and question count (unpaired); its hard floor, if any."""

    outcomes: Mapping[str, bool] | None = None
    value: float | None = None
    n: int | None = None
    floor: float | None = None

    @property
    def paired(self) -> bool:
        return bool(self.outcomes)

    def value_and_n(self) -> tuple[float, int]:
        """The unpaired reference's (value, n); a Monitor refuses a reference without them."""
        if self.value is None or not self.n:
            raise ValueError("a sequential reference needs per-question outcomes or a value and n")
        return self.value, self.n


@dataclass(frozen=True)
class Rule:
    alpha: float
    min_effect: float


@dataclass(frozen=True)
class Decision:
    state: str  # REGRESSED | PASS | IMPROVED
    asked: int  # the questions of the prefix that decided
    test: str  # betting-paired | betting-unpaired
    p_value: float  # the anytime-valid p-value of the test that decided
    delta: float  # the prefix's accuracy change
    reason: str


def final_alpha(rule: Rule, paired: bool) -> float:
    """The level of the fixed-n test at the budget of a sequential eval: alpha paired; unpaired, what its early
    REGRESSED looks left (UNPAIRED_EARLY_SHARE), so that its REGRESSED rate is at most alpha in all."""
    return rule.alpha if paired else rule.alpha * (1.0 - UNPAIRED_EARLY_SHARE)


def _fixed_n(paired: bool, counts: Sequence[int], rule: Rule, reference: Reference) -> tuple[str, float]:
    """Today's fixed-n accuracy rule (harness.compare) on the prefix: (state, delta). Kept equal to compare's
    by tests/test_sequential.py on random prefixes."""
    if paired:
        both_right, b, c, both_wrong = counts
        table = PairedCounts(both_right, b, c, both_wrong)
        delta = (c - b) / table.n
        p_drop, p_gain = mcnemar_exact_drop(table), mcnemar_exact_gain(table)
    else:
        right, n = counts[0], counts[1]
        value = right / n
        reference_value, reference_n = reference.value_and_n()
        delta = float(f"{value - reference_value:.12g}")
        p_drop = fisher_exact_drop(reference_value, reference_n, value, n)
        p_gain = fisher_exact_gain(reference_value, reference_n, value, n)
    large = abs(delta) >= rule.min_effect - 1e-12
    if delta < 0 and p_drop < rule.alpha and large:
        return REGRESSED, delta
    if delta > 0 and p_gain < rule.alpha and large:
        return IMPROVED, delta
    return PASS, delta


class Monitor:
    """The sequential rule, fed one answered question at a time in the fixed order (`add`); `decision` is
    set once the verdict is decided, and stays."""

    def __init__(self, reference: Reference, rule: Rule):
        if not reference.paired:
            reference.value_and_n()  # raises ValueError where the reference has neither
        self.reference, self.rule = reference, rule
        self.asked = 0
        self.counts = [0, 0, 0, 0]  # paired: both right, b, c, both wrong; unpaired: right, n
        self.decision: Decision | None = None
        alpha = rule.alpha
        margin = EARLY_MARGIN * rule.min_effect
        if reference.paired:  # x = (delta + 1) / 2 on average
            self.drop = BettingTest((1.0 - margin) / 2.0, -1, alpha)  # H0: delta >= -margin
            self.gain = BettingTest((1.0 + margin) / 2.0, +1, alpha)  # H0: delta <= margin
            # H0: delta <= -min_effect
            self.small: BettingTest | MixtureTest = MixtureTest((1.0 - rule.min_effect) / 2.0, +1, alpha)
        else:
            reference_value, reference_n = reference.value_and_n()
            right = right_answers(reference_value, reference_n)
            early = alpha * UNPAIRED_EARLY_SHARE  # the early REGRESSED looks' share, half to each side
            upper = clopper_pearson(right, reference_n, alpha / 2.0, +1)
            lower = clopper_pearson(right, reference_n, early / 2.0, -1)
            self.drop = BettingTest(max(lower - margin, 0.0), -1, early / 2.0)  # H0: accuracy >= lower - margin
            self.gain = BettingTest(min(upper + margin, 1.0), +1, alpha / 2.0)
            self.small = BettingTest(max(upper - rule.min_effect, 0.0), +1, alpha / 2.0)
        self.above_floor = None if reference.floor is None else BettingTest(reference.floor, +1, alpha)

    def add(self, question_id: str, correct: bool) -> Decision | None:
        if self.decision is not None:
            return self.decision
        outcomes = self.reference.outcomes  # non-empty exactly when the reference is paired
        if outcomes and question_id not in outcomes:
            return None  # the baseline has no answer to pair it with (as the fixed-n gate's pairing)
        self.asked += 1
        if outcomes:
            before = bool(outcomes[question_id])
            x = (int(correct) - int(before) + 1) / 2.0
            self.counts[(0 if correct else 1) if before else (2 if correct else 3)] += 1
        else:
            x = float(correct)
            self.counts[0] += int(correct)
            self.counts[1] += 1
        for test in (self.drop, self.gain, self.small):
            test.observe(x)
        if self.above_floor is not None:
            self.above_floor.observe(float(correct))
        self.decision = self._decide()
        return self.decision

    def _decide(self) -> Decision | None:
        """Today's rule on the prefix is asked only once an anytime test has rejected (its exact p-values cost
        more than a look)."""
        floor_ok = self.above_floor is None or self.above_floor.rejected
        if not (self.drop.rejected or (self.small.rejected and floor_ok)):
            return None
        paired = self.reference.paired
        test = "betting-paired" if paired else "betting-unpaired"
        fixed, delta = _fixed_n(paired, self.counts, self.rule, self.reference)
        detail = self._detail()
        margin = EARLY_MARGIN * self.rule.min_effect
        if self.drop.rejected and fixed == REGRESSED:
            return Decision(REGRESSED, self.asked, test, self.drop.p_value, delta,
                            f"drop {-delta:.4f} >= {self.rule.min_effect:.4f}, anytime-valid p={self.drop.p_value:.2g}"
                            f" < {self.drop.alpha:.2g} that it exceeds {margin:.4f} ({detail})")
        if self.small.rejected and floor_ok and fixed != REGRESSED:
            if self.gain.rejected and fixed == IMPROVED:
                return Decision(IMPROVED, self.asked, test, self.gain.p_value, delta,
                                f"gain {delta:.4f}, anytime-valid p={self.gain.p_value:.2g} ({detail})")
            return Decision(PASS, self.asked, test, self.small.p_value, delta,
                            f"a drop of {self.rule.min_effect:.4f} or more ruled out, anytime-valid "
                            f"p={self.small.p_value:.2g} < {self.small.alpha:.2g} ({detail})")
        return None

    def _detail(self) -> str:
        if self.reference.paired:
            return f"b={self.counts[1]} c={self.counts[2]} over {self.asked} paired questions"
        return f"{self.counts[0]}/{self.counts[1]} right vs baseline {self.reference.value:.4f} of n={self.reference.n}"


def replay(outcomes: Mapping[str, bool], reference: Reference, rule: Rule) -> Decision | None:
    """The decision the monitor reaches on these outcomes asked in the fixed order (None: undecided)."""
    monitor = Monitor(reference, rule)
    for question_id in in_order(outcomes):
        decision = monitor.add(question_id, outcomes[question_id])
        if decision is not None:
            return decision
    return None


def record(decision: Decision | None, budget: int, asked: int, *, answered: int) -> dict:
    """The `sequential` record an eval keeps in its result details: the order, the budget (M), the questions of
    the prefix that decided (N; the whole budget when nothing decided early), the answers that came back in
    all (the requests in flight at the decision included), and the decision."""
    return {"order": ORDER, "budget": budget, "asked": asked, "answered": answered,
            "decided": None if decision is None else decision.state,
            "stopped_early": decision is not None and asked < budget}
