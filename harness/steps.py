"""Change detection over a series of runs, and the tolerance band a plot draws: the gate's own rules.

A step is found with the gate's own test between consecutive windows (harness.compare.compare_metric with
the suite's GateSettings): for each run k of a series, the mean figure of the `window` runs before it stands
as the baseline and the mean of the `window` runs from k on as the measured figure. Where the gate would
call that REGRESSED or IMPROVED, a change starts at k; of consecutive such runs in one direction, the one
with the largest change is the step (the windows straddle a step for a few runs around it). So a step is a
change the gate itself would call real: significant and at least `min_effect` for accuracy (the test is made
at one run's n: nightly runs repeat the same questions, so pooling them adds no information), beyond the
memory or accept-length tolerance, a significant and large paired change of a divergence (per-item values
averaged over each window). asv's `step_detect` (a penalised piecewise-constant fit) was the alternative; it
estimates the noise from the series itself, which five nightly runs cannot do, while the gate knows each
metric's noise (binomial n, per-item pairs, tolerances). A change of eval protocol is a step of its own:
figures on either side are never compared.

The band is where the gate's ladder leaves the baseline's verdict: found by bisection on compare_metric
itself, never re-derived (accuracy at a run's n, memory and accept-length tolerances, floors, ceilings).
"""

from __future__ import annotations

import fnmatch
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from harness.baselines import BaselineEntry, Provenance
from harness.compare import CELL_METRIC, State, Verdict, compare_metric
from harness.history import History, Point
from harness.metric_kinds import MetricKind
from harness.metrics import METRICS
from harness.protocols import protocol_differences
from harness.results import MetricSample
from harness.suite import GateSettings

DEFAULT_WINDOW = 3
PROTOCOL_CHANGE = "PROTOCOL_CHANGED"
_WINDOW_PROVENANCE = Provenance(source="harness", date="-", note="the runs before a candidate step")


@dataclass(frozen=True)
class Step:
    """A change in a series: `point` is the first run after it."""

    point: Point
    index: int  # of the first run after the change, among the series' points
    direction: str  # State.REGRESSED / State.IMPROVED value, or PROTOCOL_CHANGE
    before: float | None  # the mean of the window before
    after: float | None  # the mean of the window from the step on
    p_value: float | None
    test: str | None
    reason: str

    @property
    def delta(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before

    def describe(self) -> str:
        engine = self.point.engine_label("engine unknown")
        change = "" if self.delta is None else f": {self.before:.4g} -> {self.after:.4g}"
        return f"{self.direction} from run {self.point.run_id} ({self.point.date or 'no date'}; {engine}){change}"

    def to_dict(self) -> dict:
        return {"run": self.point.run_id, "index": self.index, "direction": self.direction, "date": self.point.date,
                "engine": self.point.engine, "engine_version": self.point.engine_version,
                "engine_commit": self.point.engine_commit, "before": self.before, "after": self.after,
                "delta": self.delta, "p_value": self.p_value, "test": self.test, "reason": self.reason}


@dataclass(frozen=True)
class Trend:
    """One series (a cell's metric over runs, oldest first) and its steps."""

    suite: str
    cell_id: str
    metric: str
    points: tuple[Point, ...]
    steps: tuple[Step, ...]

    @property
    def measured(self) -> list[Point]:
        return [p for p in self.points if p.value is not None]

    @property
    def latest(self) -> Point:
        return self.points[-1]

    @property
    def current(self) -> Point:
        """The latest point that stands for the suite's state: a planted defect's run never does."""
        return next((p for p in reversed(self.points) if not p.planted), self.points[-1])


def trends(history: History, *, suites: Sequence[str] | None = None, cells: Sequence[str] | None = None,
           metrics: Sequence[str] | None = None, window: int = DEFAULT_WINDOW) -> list[Trend]:
    """Every series of the history that the filters select (cells and metrics are globs), with its steps,
    each series judged with its suite's newest gate settings. A run where the whole cell failed or did not run
    without a baseline to name (metric `cell`) is a point without a figure in each of the cell's series."""
    series = history.series()
    whole_cell = {(suite, cell): points for (suite, cell, metric), points in series.items() if metric == CELL_METRIC}
    with_figures = {(suite, cell) for (suite, cell, metric) in series if metric != CELL_METRIC}
    out = []
    for (suite, cell_id, metric), points in series.items():
        if metric == CELL_METRIC and (suite, cell_id) in with_figures:
            continue  # shown in the cell's metric series instead
        if not _selected(suite, cell_id, metric, suites, cells, metrics):
            continue
        if metric != CELL_METRIC and (suite, cell_id) in whole_cell:
            extra = [replace(p, metric=metric) for p in whole_cell[suite, cell_id]]
            points = sorted([*points, *extra], key=lambda p: (p.date or "", p.run_id))
        found = () if metric == CELL_METRIC else tuple(detect_steps(points, history.gate_for(suite), window))
        out.append(Trend(suite, cell_id, metric, tuple(points), found))
    return out


def _selected(suite: str, cell_id: str, metric: str, suites: Sequence[str] | None, cells: Sequence[str] | None,
              metrics: Sequence[str] | None) -> bool:
    return ((not suites or suite in suites)
            and (not cells or any(fnmatch.fnmatchcase(cell_id, pattern) for pattern in cells))
            and (not metrics or any(fnmatch.fnmatchcase(metric, pattern) for pattern in metrics)))


def detect_steps(points: Sequence[Point], gate: GateSettings, window: int = DEFAULT_WINDOW) -> list[Step]:
    """The steps of one series (one cell and metric, oldest run first). Points without a figure are skipped."""
    if window < 1:
        raise ValueError("window must be at least 1")
    segments = _protocol_segments([(index, p) for index, p in enumerate(points) if p.value is not None])
    steps: list[Step] = []
    for position, segment in enumerate(segments):
        if position:
            index, first = segment[0]
            changes = _protocol_change(segments[position - 1][-1][1], first)
            steps.append(Step(first, index, PROTOCOL_CHANGE, None, None, None, "protocol",
                              "protocol changed: " + "; ".join(changes)))
        steps += _steps_within(segment, gate, window)
    return steps


def _protocol_segments(measured: list[tuple[int, Point]]) -> list[list[tuple[int, Point]]]:
    """Runs of consecutive points measured under one eval protocol."""
    segments: list[list[tuple[int, Point]]] = []
    for item in measured:
        if segments and not _protocol_change(segments[-1][-1][1], item[1]):
            segments[-1].append(item)
        else:
            segments.append([item])
    return segments


def _protocol_change(before: Point, after: Point) -> list[str]:
    old = before.sample.protocol if before.sample is not None else None
    new = after.sample.protocol if after.sample is not None else None
    if old is None or new is None:
        return []
    return protocol_differences(new, old)


def _steps_within(segment: list[tuple[int, Point]], gate: GateSettings, window: int) -> list[Step]:
    """Candidates (runs where the windows differ), grouped into runs of consecutive candidates of one
    direction; each group is one change, located at its first run that differs from the window before it
    on its own (else at the largest change of the windows)."""
    groups: list[list[tuple[Step, bool]]] = []
    for k in range(1, len(segment)):
        before = [p for _, p in segment[max(0, k - window):k]]
        after = [p for _, p in segment[k:k + window]]
        verdict = _window_verdict(before, after, gate)
        if verdict.state not in (State.REGRESSED, State.IMPROVED):
            continue
        index, point = segment[k]
        candidate = Step(point, index, verdict.state.value, _mean(before), _mean(after), verdict.p_value,
                         verdict.test, f"{compared(before, after)}: {verdict.reason}")
        alone = _window_verdict(before, [point], gate).state is verdict.state
        if groups and groups[-1][-1][0].direction == candidate.direction \
                and segment[k - 1][0] == groups[-1][-1][0].index:
            groups[-1].append((candidate, alone))
        else:
            groups.append([(candidate, alone)])
    return [_locate(group) for group in groups]


def _locate(group: list[tuple[Step, bool]]) -> Step:
    """The windows straddle a change for a few runs around it: the change starts at the first run that the
    gate tells apart from the runs before it by itself; failing that, where the windows differ most."""
    for candidate, alone in group:
        if alone:
            return candidate
    return max((candidate for candidate, _ in group), key=lambda c: abs(c.delta or 0))


def compared(before: list[Point], after: list[Point]) -> str:
    """What a step's test compared: two windows of runs, never one run against its baseline (that is the run's
    own verdict, with its own test and p-value)."""
    def runs(points: list[Point]) -> str:
        names = points[0].run_id if len(points) == 1 else f"{points[0].run_id} .. {points[-1].run_id}"
        return f"{len(points)} run{'s' if len(points) > 1 else ''} ({names}, mean {_mean(points):.4g})"

    return f"windows: {runs(before)} against {runs(after)}"


def _window_verdict(before: list[Point], after: list[Point], gate: GateSettings) -> Verdict:
    metric = before[0].metric
    baseline = _window_sample(before, nearest=-1)
    entry = BaselineEntry(metric=metric, provenance=_WINDOW_PROVENANCE, value=baseline.value, n=baseline.n,
                          protocol=baseline.protocol, outcomes=baseline.outcomes, values=baseline.values)
    return compare_metric(metric, _window_sample(after, nearest=0), entry, gate)


def _window_sample(points: list[Point], nearest: int) -> MetricSample:
    """The window's figures as one sample: the mean value at one run's n (the smallest), the protocol of the
    run nearest the candidate step (`nearest`: its index in the window), per-item values averaged over the items
    every run measured, and per-question outcomes where every run has them over the same questions: each
    question's majority outcome (a tie: the nearest run's), so that accuracy windows are paired question by
    question (McNemar), as a run is against its baseline."""
    counts = [p.n for p in points if p.n]
    samples = [p.sample for p in points if p.sample is not None]
    values = None
    per_item = [s.values for s in samples if s.values]
    if per_item and len(per_item) == len(points):
        shared = set.intersection(*(set(v) for v in per_item))
        values = {item: statistics.fmean(v[item] for v in per_item) for item in sorted(shared)} or None
    protocol = samples[nearest].protocol if samples else None
    return MetricSample(_mean(points), min(counts) if counts else None, _majority(points, nearest), protocol, values)


def _majority(points: list[Point], nearest: int) -> dict[str, bool] | None:
    each = [p.sample.outcomes if p.sample is not None else None for p in points]
    outcomes = [o for o in each if o]
    if len(outcomes) != len(each) or any(o.keys() != outcomes[0].keys() for o in outcomes):
        return None
    out: dict[str, bool] = {}
    for question in outcomes[0]:
        right = sum(o[question] for o in outcomes)
        wrong = len(outcomes) - right
        out[question] = outcomes[nearest][question] if right == wrong else right > wrong
    return out


def _mean(points: list[Point]) -> float:
    return statistics.fmean(p.value for p in points if p.value is not None)


# --- the tolerance band -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Band:
    """Where the gate leaves the baseline's verdict: below `low` the gate says `below`, above `high` `above`
    (REGRESSED or IMPROVED, by the metric's direction); None where no figure on that side does."""

    low: float | None = None
    high: float | None = None
    below: str | None = None
    above: str | None = None


def tolerance_band(metric: str, entry: BaselineEntry, gate: GateSettings, n: int | None = None) -> Band:
    """The band around a baseline entry, found by bisection on the gate's own comparison. Accuracy is tested
    at `n` questions (default: the baseline's), without per-question pairing."""
    reference = next((x for x in (entry.value, entry.floor, entry.ceiling) if x is not None), None)
    if reference is None:
        return Band()

    divergence = METRICS[metric].kind.per_item
    if divergence and entry.value is not None:  # a paired test: the windows the baseline holds (or two stand-ins)
        entry = replace(entry, values=entry.values or {"a": entry.value, "b": entry.value})

    def state(value: float) -> State:
        # A divergence moved by the same amount on every window: certain significance, so the band's edges are
        # where the minimum effect (or a ceiling) starts to count; a real run must also be significant.
        # entry.values is set above wherever divergence and entry.value are
        values = ({item: base + value - entry.value for item, base in entry.values.items()}
                  if divergence and entry.value is not None and entry.values is not None else None)
        sample = MetricSample(value, n or entry.n, None, entry.protocol, values)
        return compare_metric(metric, sample, entry, gate).state

    def flagged(value: float) -> bool:
        return state(value) in (State.REGRESSED, State.IMPROVED)

    low_limit, high_limit = _search_range(METRICS[metric].kind, reference)
    low, high = _edge(flagged, reference, low_limit), _edge(flagged, reference, high_limit)
    return Band(low, high, None if low is None else state(low_limit).value,
                None if high is None else state(high_limit).value)


def _search_range(kind: MetricKind, reference: float) -> tuple[float, float]:
    low, high = kind.bounds
    # Unbounded above (GiB, tokens per step, nats): no gate tolerance reaches past this.
    return low, 4 * abs(reference) + 8.0 if high is None else high


def _edge(flagged: Callable[[float], bool], inside: float, outside: float, rounds: int = 60) -> float | None:
    """The boundary between `inside` (not flagged) and `outside` (flagged), by bisection; None when `outside`
    is not flagged either (no edge on that side) or `inside` already is."""
    if inside == outside or flagged(inside) or not flagged(outside):
        return None
    for _ in range(rounds):
        middle = (inside + outside) / 2
        if flagged(middle):
            outside = middle
        else:
            inside = middle
    return (inside + outside) / 2
