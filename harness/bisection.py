"""Bisecting a regression over an ordered series of engine builds with the gate's own verdicts: pure functions.

The builds are indexed 0 (the good end) to n - 1 (the bad end). Every step is judged by the gate
(harness.compare) against the good build's measured figures, its per-question outcomes or per-item values
making the test paired; the metric that regressed most significantly at the bad end drives the search
(`driving_verdict`). A step is BAD when that metric regressed, GOOD when it did not, and SKIP (as `git bisect
skip`) when the cell could not be measured. A GOOD step that the same gate cannot tell apart from the bad end
either (not IMPROVED against the bad build's figures) is marked undecided: its interval still allows the
regression. The search (`next_index`, `conclusion`) assumes, as git bisect does, that the builds turn bad once.

The seam for sequential verdicts (issue 26): `judge` takes a finished step's result; a sequential gate that
decides a step early would give `judge` the result it stopped at, and nothing else here changes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import schema
from harness.baselines import BaselineEntry
from harness.compare import CELL_METRIC, State, Verdict, compare_cell, compare_metric
from harness.engines.builds import Build
from harness.engines.failures import LOAD_REGRESSION_CAUSES
from harness.errors import ConfigError
from harness.metrics import METRICS
from harness.metrics import samples as metric_samples
from harness.results import STATUS_OK, CellResult, now_iso
from harness.suite import GateSettings

STATE_FILE = "bisect.json"
STATE_KIND = "harness.bisect"
LOAD_TEST = "log"  # compare's test name for a cell whose server failed to load the way the fixes guard


class Call(str, enum.Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"


@dataclass(frozen=True)
class Judgement:
    """One build's place in the search, with the evidence it rests on."""

    call: Call
    verdict: Verdict | None = None  # the driving metric's verdict against the good build
    against_bad: Verdict | None = None  # the same figure against the bad build's (decides `undecided`)
    reason: str = ""

    @property
    def undecided(self) -> bool:
        return self.call is Call.GOOD and self.against_bad is not None and self.against_bad.state is not State.IMPROVED


@dataclass(frozen=True)
class Conclusion:
    """Where the search ended: the first bad build, or (skips in the way) the range it lies in."""

    good: int  # the last build judged good
    bad: int  # the first build judged bad

    @property
    def found(self) -> bool:
        return self.bad == self.good + 1

    def candidates(self) -> range:
        return range(self.good + 1, self.bad + 1)


def known_metric(metric: str) -> bool:
    return metric in METRICS or metric == CELL_METRIC


def _significance(verdict: Verdict) -> tuple[int, float]:
    """The order "most significant" means: a load failure (certain), then the tests by p-value, then the
    rules without one (memory tolerance, floors and ceilings), in the gate's own order."""
    if verdict.test == LOAD_TEST:
        return (0, 0.0)
    if verdict.p_value is not None:
        return (1, verdict.p_value)
    return (2, 0.0)


def driving_verdict(verdicts: list[Verdict], wanted: str | None = None) -> Verdict | None:
    """The bad end's REGRESSED verdict that drives the bisect: `wanted`'s (--metric), else the most significant
    one; None when nothing regressed (the bad end does not reproduce)."""
    regressed = [v for v in verdicts if v.state is State.REGRESSED]
    if wanted is not None:
        regressed = [v for v in regressed if v.metric == wanted]
    return min(regressed, key=_significance) if regressed else None


def is_load_regression(result: CellResult) -> bool:
    return result.status != STATUS_OK and result.error is not None and result.error.cause in LOAD_REGRESSION_CAUSES


def judge(result: CellResult, driver: Verdict, good: dict[str, BaselineEntry], bad: dict[str, BaselineEntry],
          gate: GateSettings) -> Judgement:
    """A measured step, judged against the good build's figures on the driving metric."""
    if result.status != STATUS_OK:
        cause = f"{result.error.cause}: {result.error.message}" if result.error else result.status
        if is_load_regression(result):
            return Judgement(Call.BAD, reason=f"failed to load ({cause})")
        return Judgement(Call.SKIP, reason=f"not measurable ({cause})")
    if driver.test == LOAD_TEST:  # the bad end did not load: a build that loads does not have its regression
        return Judgement(Call.GOOD, reason="loaded")
    verdict = next((v for v in compare_cell(result.cell_id, result, good, gate) if v.metric == driver.metric), None)
    if verdict is None:
        return Judgement(Call.SKIP, reason=f"{driver.metric} was not measured")
    if verdict.state is State.REGRESSED:
        return Judgement(Call.BAD, verdict, reason=verdict.reason)
    if verdict.state in (State.PASS, State.IMPROVED):
        sample = metric_samples(result)[driver.metric]
        entry = bad.get(driver.metric)
        against = compare_metric(driver.metric, sample, entry, gate) if entry is not None else None
        return Judgement(Call.GOOD, verdict, against, reason=verdict.reason)
    return Judgement(Call.SKIP, verdict, reason=f"{verdict.state.value}: {verdict.reason}")


def bounds(calls: dict[int, Call]) -> Conclusion:
    """The last good build before the first bad one (index 0 is good and the last index bad by construction)."""
    bad = min(index for index, call in calls.items() if call is Call.BAD)
    good = max(index for index, call in calls.items() if call is Call.GOOD and index < bad)
    return Conclusion(good, bad)


def next_index(calls: dict[int, Call]) -> int | None:
    """The next build to measure: the unmeasured one nearest the middle of the interval still open (the lower
    of two equally near), or None when every build in it has been measured or skipped."""
    span = bounds(calls)
    open_builds = [index for index in range(span.good + 1, span.bad) if index not in calls]
    middle = (span.good + span.bad) / 2
    return min(open_builds, key=lambda index: (abs(index - middle), index)) if open_builds else None


def worst_case_steps(builds: int) -> int:
    """Cell runs a series of `builds` takes at most without skips: both ends, then ceil(log2(builds - 1))."""
    steps, width = 0, builds - 1
    while width > 1:
        width = (width + 1) // 2
        steps += 1
    return 2 + steps


@dataclass(frozen=True)
class Setup:
    """What a bisect directory's bisect.json records: enough to resume it anywhere the sources are."""

    suite: str
    cell: str
    builds: tuple[Build, ...]
    source: str | None = None
    src_subdir: str = "."
    python: str | None = None
    metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": STATE_KIND, "schema_version": schema.CURRENT_VERSIONS[STATE_KIND], "suite": self.suite,
                "cell": self.cell, "source": self.source, "src_subdir": self.src_subdir, "python": self.python,
                "metric": self.metric, "builds": [b.to_dict() for b in self.builds], "started_at": now_iso()}

    @classmethod
    def read(cls, directory: Path) -> Setup:
        path = directory / STATE_FILE
        if not path.exists():
            raise ConfigError(f"--resume {directory}: no {STATE_FILE} (not a bisect directory)")
        body = schema.check_version(schema.read_document(path), path, STATE_KIND, migrate=True)
        try:
            return cls(suite=body["suite"], cell=body["cell"], source=body.get("source"),
                       src_subdir=body.get("src_subdir") or ".", python=body.get("python"), metric=body.get("metric"),
                       builds=tuple(Build.from_dict(b) for b in body["builds"]))
        except (KeyError, TypeError) as error:
            raise ConfigError(f"{path}: malformed ({error})") from None


@dataclass
class Evidence:
    """What the bisect learned, build by build (index -> judgement), and the good end's figures."""

    setup: Setup
    good: CellResult | None = None
    judgements: dict[int, Judgement] = field(default_factory=dict)
    measured: list[int] = field(default_factory=list)  # builds measured by this invocation, in order
    kept: list[int] = field(default_factory=list)  # builds whose step an earlier invocation finished

    @property
    def calls(self) -> dict[int, Call]:
        calls = {index: judgement.call for index, judgement in self.judgements.items()}
        return {0: Call.GOOD, **calls}
