"""The gate: pure comparison of measured figures with baselines, giving typed verdicts.

Accuracy regresses only when the drop is statistically significant AND practically large
(asv's "factor and test" rule), or falls below a hard floor. Memory regresses beyond a
tolerance or above a ceiling; accept length below baseline minus a tolerance or a floor.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.baselines import BaselineEntry, Baselines, MeasuredOn, measured_on
from harness.engines.failures import LOAD_REGRESSION_CAUSES, REMEDIES
from harness.errors import EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, EXIT_USAGE
from harness.kernels.selection import mismatch as kernels_mismatch
from harness.metrics import METRICS
from harness.metrics import samples as metric_samples
from harness.protocols import protocol_differences
from harness.results import STATUS_CONFIG_ERROR, STATUS_OK, CellResult, MetricSample
from harness.sequential import Reference, Rule, final_alpha, replay
from harness.stats import (
    fisher_exact_drop,
    fisher_exact_gain,
    mcnemar_exact_drop,
    mcnemar_exact_gain,
    pair_outcomes,
    paired_difference,
)
from harness.suite import GateSettings

CELL_METRIC = "cell"  # the metric name of rows about a whole cell (it failed, or did not run)


@dataclass(frozen=True)
class Meaning:
    """What a verdict state means wherever it lands: the exit code, the reports, the "worst of" order."""

    key: str  # how counts and the headline name it: the state's value, or CAUGHT
    mark: str  # the console's and summary.md's label
    severity: int  # the worse state of two has the higher severity; the run's exit code is the worst's
    exit_code: int  # what this state alone makes of the run's exit code
    junit: str  # failure | error | skipped | pass
    explained: bool = True  # summary.md's "Why" lists its reason

    @property
    def problem(self) -> bool:
        """Anything that keeps the run from exiting 0 (shown in bold in summary.md)."""
        return self.exit_code != EXIT_OK


class State(str, enum.Enum):
    """The verdict states, each with its meaning (exit code 1 regression > 3 infra > 2 config > 0)."""

    meaning: Meaning

    def __new__(cls, value: str, meaning: Meaning) -> State:
        state = str.__new__(cls, value)
        state._value_ = value
        state.meaning = meaning
        return state

    REGRESSED = "REGRESSED", Meaning("REGRESSED", "REGRESSED", 7, EXIT_REGRESSION, "failure")
    INFRA_ERROR = "INFRA_ERROR", Meaning("INFRA_ERROR", "INFRA ERROR", 6, EXIT_INFRA, "error")
    MISSING = "MISSING", Meaning("MISSING", "MISSING", 5, EXIT_INFRA, "error")
    # never launched: the checkpoint or config fails a preflight rule, or an eval has nothing to measure against
    CONFIG_ERROR = "CONFIG_ERROR", Meaning("CONFIG_ERROR", "CONFIG ERROR", 4, EXIT_USAGE, "error")
    NOT_COMPARABLE = "NOT_COMPARABLE", Meaning("NOT_COMPARABLE", "NOT COMPARABLE", 3, EXIT_USAGE, "error")
    IMPROVED = "IMPROVED", Meaning("IMPROVED", "improved", 2, EXIT_OK, "pass")
    NO_BASELINE = "NO_BASELINE", Meaning("NO_BASELINE", "no baseline", 1, EXIT_OK, "skipped", explained=False)
    PASS = "PASS", Meaning("PASS", "pass", 0, EXIT_OK, "pass", explained=False)


# A canary's REGRESSED verdict: its planted defect was seen, which is a pass.
CAUGHT = Meaning("CAUGHT", "caught", 0, EXIT_OK, "pass")


@dataclass(frozen=True)
class Verdict:
    cell_id: str
    metric: str
    state: State
    value: float | None = None
    baseline: float | None = None
    delta: float | None = None
    p_value: float | None = None
    test: str | None = None  # how it was decided: mcnemar-exact, fisher-exact, floor, tolerance, ...
    reason: str = ""
    fix: str | None = None
    n: int | None = None
    baseline_n: int | None = None
    expected: bool = False  # a canary's REGRESSED: the planted defect was caught, which is a pass
    decided_after: tuple[int, int] | None = None  # the sequential gate stopped the eval: (N asked, M budget)

    @property
    def meaning(self) -> Meaning:
        return CAUGHT if self.expected else self.state.meaning

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["state"] = self.state.value
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Verdict:
        after = body.get("decided_after")
        # State(value) looks the member up by value; mypy checks the call against the members' __new__
        return cls(**{**body, "state": State(body["state"]),  # type: ignore[call-arg]
                      "decided_after": None if after is None else tuple(after)})


# --- comparability: which baseline a figure may be judged against at all ------------------------------------

@dataclass(frozen=True)
class Incomparable:
    """Why a figure cannot be judged against a baseline entry, and the verdict that says so."""

    state: State  # NO_BASELINE (nothing measured alike yet) or NOT_COMPARABLE (measured some other way)
    reason: str
    test: str = "comparability"  # the verdict's `test`: which rule objected


ComparabilityRule = Callable[[str, MeasuredOn, MeasuredOn], "Incomparable | None"]


def same_hardware(metric: str, measured: MeasuredOn, baseline: MeasuredOn) -> Incomparable | None:
    """A figure that follows the device (MetricDef.depends_on_hardware) is judged only against one of the same
    GPU model, memory size and sizing flags: an H100's KV pool against an H200's says nothing (issue 25)."""
    if not METRICS[metric].depends_on_hardware:
        return None
    unknown_memory = measured.gpu is not None and baseline.gpu_memory_gib is None
    if (measured.gpu, measured.gpu_memory_gib) != (baseline.gpu, baseline.gpu_memory_gib) and not (
            measured.gpu is None and baseline.gpu is None):
        if unknown_memory and measured.gpu == baseline.gpu:
            why = f"the baseline ({baseline.gpu}) does not record its GPU's memory size: promote it again"
        else:
            why = f"measured on {measured.describe()}, the baseline on {baseline.describe()}"
        return Incomparable(State.NO_BASELINE, f"no baseline for this hardware: {why}")
    if baseline.recorded and measured.sizing != baseline.sizing:
        return Incomparable(State.NO_BASELINE, f"no baseline for this hardware and sizing: measured with "
                                               f"{_flags(measured)}, the baseline with {_flags(baseline)}")
    return None


def _flags(where: MeasuredOn) -> str:
    return " ".join(f"{flag} {value}" for flag, value in where.sizing) or "no sizing flags"


def same_kernels(metric: str, measured: MeasuredOn, baseline: MeasuredOn) -> Incomparable | None:
    """Every figure, accuracy too, is judged only against a baseline of the same kernels (the reference aiter
    kernels' figures against native ones say nothing of either)."""
    different = kernels_mismatch(measured.kernels, baseline.kernels)
    return None if different is None else Incomparable(State.NOT_COMPARABLE, different, test="kernels")


# Each rule says why a figure measured one way may not be judged against a baseline measured another; the
# first that objects decides. A new rule is one more function here.
COMPARABILITY_RULES: tuple[ComparabilityRule, ...] = (same_kernels, same_hardware)


def comparability(metric: str, measured: MeasuredOn, baseline: MeasuredOn,
                  rules: tuple[ComparabilityRule, ...] = COMPARABILITY_RULES) -> Incomparable | None:
    """None when a figure measured on `measured` may be judged against a baseline measured on `baseline`."""
    return next((found for rule in rules if (found := rule(metric, measured, baseline)) is not None), None)


def comparable_entry(metric: str, measured: MeasuredOn, entry: BaselineEntry) -> BaselineEntry | Incomparable:
    """The baseline entry a figure is judged against: the first of the metric's entries (one per hardware)
    that is comparable, else why none is (the first entry's objection)."""
    objections = []
    for alternative in entry.alternatives:
        objection = comparability(metric, measured, alternative.where_measured)
        if objection is None:
            return alternative
        objections.append(objection)
    return objections[0]


# A metric kind's comparison (MetricKind.compare names one of the four below).
Comparison = Callable[[str, MetricSample, BaselineEntry, GateSettings], "Verdict"]


def compare_metric(metric: str, sample: MetricSample, entry: BaselineEntry, gate: GateSettings) -> Verdict:
    """One measured figure against its baseline entry (cell_id and fix are filled in by the caller)."""
    comparison: Comparison = METRICS[metric].kind.comparison()
    return comparison(metric, sample, entry, gate)


def difference(value: float, baseline: float) -> float:
    """value - baseline without the binary noise of the subtraction (0.8 - 0.5918 is 0.20819999999999994):
    the figures carry at most ten significant digits, so twelve keep every real difference, in results.json
    and in the tolerance comparisons alike."""
    return float(f"{value - baseline:.12g}")


def _verdict(metric: str, sample: MetricSample, entry: BaselineEntry, state: State, **extra: Any) -> Verdict:
    delta = None if entry.value is None else difference(sample.value, entry.value)
    return Verdict(cell_id="", metric=metric, state=state, value=sample.value, baseline=entry.value, delta=delta,
                   n=sample.n, baseline_n=entry.n, **extra)


def compare_accuracy(metric: str, sample: MetricSample, entry: BaselineEntry, gate: GateSettings) -> Verdict:
    if entry.protocol is not None:
        differences = protocol_differences(sample.protocol or {}, entry.protocol)
        if differences:
            return _verdict(metric, sample, entry, State.NOT_COMPARABLE, test="protocol",
                            reason="protocol differs: " + "; ".join(differences))
    if entry.floor is not None and sample.value < entry.floor:
        return _verdict(metric, sample, entry, State.REGRESSED, test="floor",
                        reason=f"{sample.value:.4f} is below the floor {entry.floor:.4f}")
    if entry.value is None:
        return _verdict(metric, sample, entry, State.PASS, test="floor",
                        reason=f"at or above the floor {entry.floor:.4f}")
    min_effect = gate.min_effect_for(metric)
    if sample.sequential and sample.sequential.get("stopped_early"):
        return _compare_stopped(metric, sample, entry, gate)
    paired = None
    if entry.outcomes and sample.outcomes and entry.outcomes.keys() == sample.outcomes.keys():
        paired = pair_outcomes(entry.outcomes, sample.outcomes)
    if paired is not None:
        delta = (paired.c - paired.b) / paired.n
        p_drop, p_gain = mcnemar_exact_drop(paired), mcnemar_exact_gain(paired)
        test, detail = "mcnemar-exact", f"b={paired.b} c={paired.c} over {paired.n} paired questions"
    elif sample.n and entry.n:
        delta = difference(sample.value, entry.value)
        p_drop = fisher_exact_drop(entry.value, entry.n, sample.value, sample.n)
        p_gain = fisher_exact_gain(entry.value, entry.n, sample.value, sample.n)
        test, detail = "fisher-exact", f"n={sample.n} vs baseline n={entry.n}"
    else:
        return _verdict(metric, sample, entry, State.NOT_COMPARABLE, test="none",
                        reason="no question count on one side: no test can be made")
    # A sequential eval that ran to its budget: unpaired, its early looks spent part of alpha (harness.sequential).
    alpha = final_alpha(Rule(gate.alpha, min_effect), paired is not None) if sample.sequential else gate.alpha
    # Tiny slack: a drop of exactly the minimum effect counts, float rounding must not hide it.
    large = abs(delta) >= min_effect - 1e-12
    if delta < 0 and p_drop < alpha and large:
        return _verdict(metric, sample, entry, State.REGRESSED, test=test, p_value=p_drop,
                        reason=f"drop {-delta:.4f} >= {min_effect:.4f} and p={p_drop:.2g} < {alpha:.2g} ({detail})")
    if delta > 0 and p_gain < gate.alpha and large:
        return _verdict(metric, sample, entry, State.IMPROVED, test=test, p_value=p_gain,
                        reason=f"gain {delta:.4f} with p={p_gain:.2g} ({detail})")
    p_value = p_drop if delta < 0 else p_gain
    return _verdict(metric, sample, entry, State.PASS, test=test, p_value=p_value,
                    reason=f"within noise ({detail})")


def _compare_stopped(metric: str, sample: MetricSample, entry: BaselineEntry, gate: GateSettings) -> Verdict:
    """An eval the sequential gate stopped early (harness.sequential): its decision, made again here from the
    outcomes it kept and the baseline, so that the verdict is a function of the data like every other. Where it
    no longer decides (the baseline changed since the run), the fixed-n tests on the questions asked decide."""
    record = sample.sequential or {}
    outcomes = sample.outcomes or {}
    asked = f"decided after {record.get('asked', len(outcomes))} of {record.get('budget', '?')} questions"
    reference = Reference(outcomes=entry.outcomes or None, value=entry.value, n=entry.n, floor=entry.floor)
    decision = None
    if outcomes and (reference.paired or (entry.value is not None and entry.n)):
        decision = replay(outcomes, reference, Rule(gate.alpha, gate.min_effect_for(metric)))
    if decision is None:
        fixed = compare_accuracy(metric, dataclasses.replace(sample, sequential=None), _paired_on(entry, outcomes),
                                  gate)
        return replace(fixed, reason=f"stopped early but undecided against this baseline: fixed-n on the questions "
                                     f"asked: {fixed.reason}")
    state = State(decision.state)  # type: ignore[call-arg]  # a lookup by value, not the members' __new__
    return _verdict(metric, sample, entry, state, test=f"sequential-{decision.test}",
                    p_value=decision.p_value, reason=f"{asked}: {decision.reason}",
                    decided_after=(decision.asked, int(record.get("budget", decision.asked))))


def _paired_on(entry: BaselineEntry, outcomes: dict[str, bool]) -> BaselineEntry:
    """The baseline restricted to the questions a stopped eval asked, so that the fixed-n test pairs them."""
    if not entry.outcomes or not outcomes.keys() <= entry.outcomes.keys():
        return entry
    return dataclasses.replace(entry, outcomes={key: entry.outcomes[key] for key in outcomes})


def compare_divergence(metric: str, sample: MetricSample, entry: BaselineEntry, gate: GateSettings) -> Verdict:
    """Lower is better. Regressed above the ceiling, or when the paired per-item increase is significant
    (one-sided paired t-test over the items both sides measured) AND at least `min_effect` large."""
    if entry.protocol is not None:
        differences = protocol_differences(sample.protocol or {}, entry.protocol)
        if differences:
            return _verdict(metric, sample, entry, State.NOT_COMPARABLE, test="protocol",
                            reason="protocol differs: " + "; ".join(differences))
    if entry.ceiling is not None and sample.value > entry.ceiling:
        return _verdict(metric, sample, entry, State.REGRESSED, test="ceiling",
                        reason=f"{sample.value:.6g} is above the ceiling {entry.ceiling:.6g}")
    if entry.value is None:
        return _verdict(metric, sample, entry, State.PASS, test="ceiling", reason=f"under the ceiling {entry.ceiling:.6g}")
    paired = paired_difference(entry.values, sample.values) if entry.values and sample.values else None
    if paired is None:
        return _verdict(metric, sample, entry, State.NOT_COMPARABLE, test="none",
                        reason="no per-item values shared by both sides: no paired test can be made")
    min_effect = gate.min_effect_for(metric)
    delta, detail = paired.mean_delta, f"paired t over {paired.n} items, mean change {paired.mean_delta:+.3g}"
    large = abs(delta) >= min_effect - 1e-15
    if delta > 0 and paired.p_increase < gate.alpha and large:
        return _verdict(metric, sample, entry, State.REGRESSED, test="paired-t", p_value=paired.p_increase,
                        reason=f"rise {delta:.4g} >= {min_effect:.4g} and p={paired.p_increase:.2g} < {gate.alpha} "
                               f"({detail})")
    if delta < 0 and paired.p_decrease < gate.alpha and large:
        return _verdict(metric, sample, entry, State.IMPROVED, test="paired-t", p_value=paired.p_decrease,
                        reason=f"fall {-delta:.4g} with p={paired.p_decrease:.2g} ({detail})")
    p_value = paired.p_increase if delta > 0 else paired.p_decrease
    return _verdict(metric, sample, entry, State.PASS, test="paired-t", p_value=p_value,
                    reason=f"within noise or below {min_effect:.4g} ({detail})")


def compare_memory(metric: str, sample: MetricSample, entry: BaselineEntry, gate: GateSettings) -> Verdict:
    if entry.ceiling is not None and sample.value > entry.ceiling:
        return _verdict(metric, sample, entry, State.REGRESSED, test="ceiling",
                        reason=f"{sample.value:.2f} GiB is above the ceiling {entry.ceiling:.2f} GiB")
    if entry.value is None:
        return _verdict(metric, sample, entry, State.PASS, test="ceiling",
                        reason=f"under the ceiling {entry.ceiling:.2f} GiB")
    rule = gate.memory_tolerance(metric)
    tolerance = rule.of(entry.value)
    excess = difference(sample.value, entry.value)
    why = f"{tolerance:.2f} GiB ({rule.describe(entry.value)})"
    if excess > tolerance:
        return _verdict(metric, sample, entry, State.REGRESSED, test="tolerance",
                        reason=f"+{excess:.2f} GiB exceeds the tolerance {why}")
    if -excess > tolerance:
        return _verdict(metric, sample, entry, State.IMPROVED, test="tolerance",
                        reason=f"{excess:.2f} GiB, beyond the tolerance {why}")
    return _verdict(metric, sample, entry, State.PASS, test="tolerance", reason=f"within {why}")


def compare_accept_length(metric: str, sample: MetricSample, entry: BaselineEntry, gate: GateSettings) -> Verdict:
    if entry.floor is not None and sample.value < entry.floor:
        return _verdict(metric, sample, entry, State.REGRESSED, test="floor",
                        reason=f"{sample.value:.2f} is below the floor {entry.floor:.2f}")
    if entry.value is None:
        return _verdict(metric, sample, entry, State.PASS, test="floor", reason=f"at or above {entry.floor:.2f}")
    tolerance = gate.accept_length_abs
    delta = difference(sample.value, entry.value)
    if delta < -tolerance:
        return _verdict(metric, sample, entry, State.REGRESSED, test="tolerance",
                        reason=f"{delta:.2f} below baseline, beyond the tolerance {tolerance:.2f}")
    if delta > tolerance:
        return _verdict(metric, sample, entry, State.IMPROVED, test="tolerance",
                        reason=f"+{delta:.2f}, beyond the tolerance {tolerance:.2f}")
    return _verdict(metric, sample, entry, State.PASS, test="tolerance", reason=f"within {tolerance:.2f}")


def compare_cell(cell_id: str, result: CellResult | None, baseline: dict[str, BaselineEntry],
                 gate: GateSettings, *, fix: str | None = None) -> list[Verdict]:
    """Every verdict of one planned cell: its measured metrics, and baselined metrics it lacks."""
    def stamp(verdicts: Iterable[Verdict]) -> list[Verdict]:
        return [Verdict(**{**v.__dict__, "cell_id": cell_id, "fix": fix}) for v in verdicts]

    if result is None:
        metrics = list(baseline) or [CELL_METRIC]
        return stamp(Verdict("", m, State.MISSING, baseline=_value(baseline.get(m)),
                             reason="the cell did not run") for m in metrics)
    fix = fix or result.fix
    if result.status == STATUS_CONFIG_ERROR:
        message = result.error.message if result.error else "no error recorded"
        return stamp(Verdict("", m, State.CONFIG_ERROR, baseline=_value(baseline.get(m)), test="preflight",
                             reason=message) for m in (list(baseline) or [CELL_METRIC]))
    if result.status != STATUS_OK:
        error = result.error
        cause = error.cause if error else "unknown"
        regressed = cause in LOAD_REGRESSION_CAUSES
        state = State.REGRESSED if regressed else State.INFRA_ERROR
        message = error.message if error else "no error recorded"
        reason = (f"server failed to load: {cause}: {message}" if regressed else f"{cause}: {message}")
        if cause in REMEDIES:
            reason += f" ({REMEDIES[cause]})"
        metrics = list(baseline) or [CELL_METRIC]
        return stamp(Verdict("", m, state, baseline=_value(baseline.get(m)), test="log" if regressed else None,
                             reason=reason) for m in metrics)

    verdicts = []
    samples = metric_samples(result)
    where = measured_on(result)
    for metric, sample in samples.items():
        entry = baseline.get(metric)
        chosen = None if entry is None else comparable_entry(metric, where, entry)
        if chosen is None:
            verdicts.append(Verdict("", metric, State.NO_BASELINE, value=sample.value, n=sample.n,
                                    reason="no baseline for this cell and metric"))
        elif isinstance(chosen, Incomparable):
            verdicts.append(Verdict("", metric, chosen.state, value=sample.value, n=sample.n, test=chosen.test,
                                    reason=chosen.reason))
        else:
            verdicts.append(compare_metric(metric, sample, chosen, gate))
    for metric, entry in baseline.items():
        if metric not in samples:
            verdicts.append(Verdict("", metric, State.MISSING, baseline=entry.value,
                                    reason="baselined, but this run did not measure it"))
    return stamp(verdicts)


def _value(entry: BaselineEntry | None) -> float | None:
    return None if entry is None else entry.value


def compare_results(planned: list[str], results: dict[str, CellResult], baselines: Baselines,
                    gate: GateSettings, fixes: dict[str, str | None] | None = None,
                    canaries: dict[str, str] | None = None) -> list[Verdict]:
    """Verdicts for every planned cell, in plan order. `canaries`: canary cell -> the cell whose baselines
    gate it; a canary that measured must regress (see `canary_verdicts`)."""
    fixes, canaries = fixes or {}, canaries or {}
    verdicts: list[Verdict] = []
    for cell_id in planned:
        result = results.get(cell_id)
        found = compare_cell(cell_id, result, baselines.cells.get(canaries.get(cell_id, cell_id), {}), gate,
                             fix=fixes.get(cell_id))
        if cell_id in canaries and result is not None and result.status == STATUS_OK:
            found = canary_verdicts(cell_id, canaries[cell_id], found)
        verdicts += found
    return verdicts


def canary_verdicts(cell_id: str, gated_as: str, verdicts: list[Verdict]) -> list[Verdict]:
    """A planted defect's verdicts: its regressions are expected (a pass); none at all means the gate has lost
    the power to see it, which is itself a regression."""
    caught = [v for v in verdicts if v.state is State.REGRESSED]
    if verdicts and all(v.state is State.NO_BASELINE for v in verdicts):
        return verdicts + [Verdict(cell_id, CELL_METRIC, State.NO_BASELINE, test="canary", fix=verdicts[0].fix,
                                   reason=f"canary: {gated_as} has no baselines yet, nothing to catch it against")]
    if caught:
        return [replace(v, expected=True, reason=f"canary caught (gated as {gated_as}): {v.reason}")
                if v.state is State.REGRESSED else v for v in verdicts]
    return verdicts + [Verdict(cell_id, CELL_METRIC, State.REGRESSED, test="canary",
                               fix=verdicts[0].fix if verdicts else None,
                               reason=f"canary not caught: a planted defect gated as {gated_as} must come out "
                                      f"REGRESSED, but no figure did")]


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """The exit code of the worst verdict (State's meanings): 1 on any regression (a canary's caught one
    excepted); else 3 on an infrastructure failure or a missing cell; else 2 when a protocol mismatch left a
    figure ungated or a cell was never launched (a config problem); else 0."""
    meanings = [v.meaning for v in verdicts]
    return max(meanings, key=lambda m: m.severity).exit_code if meanings else EXIT_OK
