"""The divergence maths (pure): per position the bucketed KL divergence and top-1 agreement of two top-k views,
per sequence their means, and over sequences the estimates with their t-based intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.evals.numerics.config import GATED, REPORTED

if TYPE_CHECKING:
    import numpy as np

_FLOOR = 1e-12  # the smallest bucket mass a candidate is credited with: an "other" mass of 0 is a rounding


@dataclass(frozen=True)
class Side:
    """One side's view of one sequence: ids/logprobs [P, k] (most likely first), actual/tail [P]."""

    ids: np.ndarray
    logprobs: np.ndarray
    actual: np.ndarray
    tail: np.ndarray


def _xlogy_ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p * ln(p / q) with 0 ln 0 = 0 and q floored at _FLOOR (no warnings, no infinities)."""
    import numpy as np

    positive = p > 0
    safe_p = np.where(positive, p, 1.0)
    return np.where(positive, p * (np.log(safe_p) - np.log(np.maximum(q, _FLOOR))), 0.0)


def _buckets(side: Side, shared: np.ndarray, actual_ids: np.ndarray,
             separate: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This side's masses on the buckets: (top-k entries shared with the other side [P, k] (0 elsewhere),
    the actual token where it is its own bucket [P], the other bucket [P]), not yet normalized."""
    import numpy as np

    probs = np.exp(side.logprobs)  # -inf padding -> 0
    is_actual = side.ids == actual_ids[:, None]
    in_top = is_actual.any(axis=1)
    # The actual token's mass from its top-k entry where it has one, so that moving it cancels exactly.
    actual = np.where(in_top, np.where(is_actual, probs, 0.0).sum(axis=1), np.exp(side.actual))
    actual = np.where(separate, actual, 0.0)
    # Other: the tail beyond the top k, plus the top-k entries the other side does not list, less the
    # actual token when it has its own bucket (it lives in one of those two).
    unshared = np.where(shared, 0.0, probs).sum(axis=1)
    other = np.maximum(side.tail + unshared - actual, 0.0)
    return np.where(shared, probs, 0.0), actual, other


def position_kld(reference: Side, candidate: Side, actual_ids: np.ndarray) -> np.ndarray:
    """KL(reference || candidate) per position over the buckets both sides know (see the module docstring):
    a lower bound of the full-vocabulary value, equal to it when the top k hold all the mass."""
    import numpy as np

    match = (reference.ids[:, :, None] == candidate.ids[:, None, :]) & (reference.ids[:, :, None] >= 0)
    shared_ref, shared_cand = match.any(axis=2), match.any(axis=1)
    in_both = ((reference.ids == actual_ids[:, None]) & shared_ref).any(axis=1)
    separate = ~in_both  # the actual token is a bucket of its own unless both top-k lists hold it
    p_top, p_actual, p_other = _buckets(reference, shared_ref, actual_ids, separate)
    q_top_own, q_actual, q_other = _buckets(candidate, shared_cand, actual_ids, separate)
    # The candidate's mass of each shared reference entry, in the reference's order.
    q_top = np.take_along_axis(q_top_own, match.argmax(axis=2), axis=1) * shared_ref
    p_norm = p_top.sum(axis=1) + p_actual + p_other  # float16 logprobs: renormalize, never leave a residue
    q_norm = q_top.sum(axis=1) + q_actual + q_other
    p_top, p_actual, p_other = p_top / p_norm[:, None], p_actual / p_norm, p_other / p_norm
    q_top, q_actual, q_other = q_top / q_norm[:, None], q_actual / q_norm, q_other / q_norm
    return (_xlogy_ratio(p_top, q_top).sum(axis=1) + _xlogy_ratio(p_actual, q_actual)
            + _xlogy_ratio(p_other, q_other))


def top1_agreement(reference: Side, candidate: Side) -> np.ndarray:
    """Per position: the most likely tokens agree, or the other one ties with it on either side."""
    import numpy as np

    ref_top, cand_top = reference.ids[:, 0], candidate.ids[:, 0]
    ref_at_cand_top = np.where(reference.ids == cand_top[:, None], reference.logprobs, -np.inf).max(axis=1)
    cand_at_ref_top = np.where(candidate.ids == ref_top[:, None], candidate.logprobs, -np.inf).max(axis=1)
    return ((ref_top == cand_top) | (ref_at_cand_top >= reference.logprobs[:, 0])
            | (cand_at_ref_top >= candidate.logprobs[:, 0]))


def sequence_values(reference: Side, candidate: Side, actual_ids: np.ndarray) -> dict[str, float]:
    """One sequence's figures (means over its positions); delta_p_rms holds the mean square until summarized."""
    import numpy as np

    delta_p = np.exp(candidate.actual) - np.exp(reference.actual)
    return {"kld": float(position_kld(reference, candidate, actual_ids).mean()),
            "top1_disagreement": float(1.0 - top1_agreement(reference, candidate).mean()),
            "delta_p_rms": float(np.mean(delta_p * delta_p)),
            "ln_ppl_ratio": float(np.mean(reference.actual - candidate.actual))}


def summarize(per_sequence: dict[str, dict[str, float]]) -> dict[str, tuple[float, float | None, tuple]]:
    """metric -> (value, SE, 95% interval) from per-sequence values; delta_p_rms as the root of the mean
    square, its interval the roots of the mean square's (SE is then left out)."""
    from harness.stats import mean_estimate

    out: dict[str, tuple[float, float | None, tuple]] = {}
    for metric in (*GATED, *REPORTED):
        estimate = mean_estimate([values[metric] for values in per_sequence.values()])
        if metric == "delta_p_rms":
            low, high = estimate.ci95
            out[metric] = (math.sqrt(max(estimate.mean, 0.0)), None,
                           (math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0))))
        else:
            out[metric] = (estimate.mean, estimate.stderr, estimate.ci95)
    return out
