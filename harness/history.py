"""The history of runs: every run directory under one or more report roots, read one way (asv's results API).

A run directory holds results.json (a run that concluded), plan.json (a run that started) or cells/ (a killed
or older one); it is found at any depth under a root, so a local reports/ and CI artifacts unpacked into
nested folders read alike. Everything that reads stored runs goes through here: shard durations, `harness
fixes`' latest verdicts, resume and merge (one run directory), compare, `harness history` and `harness
publish`. Files are schema-checked (harness.results, harness.schema): a broken or foreign file is skipped
when reading many runs, and is a one-line error when one run is asked for by name.

Each gated figure of each cell of each run is a `Point` (cell x metric x run: value, n, stderr, verdict,
engine version and commit, hardware, date); `History.frame()` gives them as a pandas DataFrame (pandas is an
optional extra, imported only there). A series is one cell's metric over runs, keyed by the suite whose
baselines gate it: `local-defects` serves a planted defect under a `local` cell id and is gated against
baselines/local.yaml, so its runs belong to `local`'s series.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import schema
from harness.errors import ConfigError
from harness.results import (
    CellResult,
    MetricSample,
    RunResult,
    cell_dir_name,
    cell_result_from_dict,
    load_run,
)
from harness.suite import GateSettings

PLAN_FILE = "plan.json"
PLAN_KIND = "harness.run_plan"


def read_plan(run_dir: Path) -> dict[str, Any]:
    path = run_dir / PLAN_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir}: no {PLAN_FILE} (not a run directory, or written by an older harness)")
    document = schema.check_version(schema.read_document(path), path, PLAN_KIND, migrate=True)
    for key, kind in (("suite", str), ("cells", list), ("run_id", str)):
        if not isinstance(document.get(key), kind):
            raise ConfigError(f"{path}: {key}: expected a {kind.__name__}")
    return document


if TYPE_CHECKING:
    import pandas

RESULTS_FILE = "results.json"
CELLS_DIR = "cells"
MAX_DEPTH = 8  # how deep under a root run directories are looked for (artifacts nest a few levels)


def run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every run directory under the roots (a root may be a run directory itself): root by root, in path
    order within each. A run directory is not descended into; a root that does not exist holds no runs."""
    found: list[Path] = []
    for root in roots:
        if is_run_dir(root):
            found.append(root)
            continue
        under: list[Path] = []
        base_depth = len(root.parts)
        for directory, subdirs, _ in os.walk(root):
            here = Path(directory)
            if is_run_dir(here):
                under.append(here)
                subdirs.clear()
            elif len(here.parts) - base_depth >= MAX_DEPTH:
                subdirs.clear()
        found += sorted(under)
    return list(dict.fromkeys(found))


def is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in (RESULTS_FILE, PLAN_FILE, CELLS_DIR))


def read_cells(run_dir: Path, *, strict: bool = True) -> dict[str, CellResult]:
    """The cell results of one run directory (cells/*/result.json), by cell id. `strict`: a malformed file is
    a ConfigError naming it (resume, merge); otherwise it is skipped (reading many runs)."""
    results = {}
    for path in sorted((run_dir / CELLS_DIR).glob("*/result.json")):
        try:
            result = cell_result_from_dict(schema.read_document(path), path)
        except ConfigError:
            if strict:
                raise
            continue
        results[result.cell_id] = result
    return results


def open_run(path: Path) -> RunResult:
    """One run by name (reports/<run> or its results.json), schema-checked and migrated; errors are one line."""
    return load_run(path)


class RunRecord:
    """One run directory, read lazily: results.json, plan.json and the cell results each when first asked for."""

    def __init__(self, path: Path):
        self.path = path
        self.problem: str | None = None  # why results.json could not be read, when it exists but is broken

    def __repr__(self) -> str:
        return f"RunRecord({str(self.path)!r})"

    @cached_property
    def result(self) -> RunResult | None:
        """The concluded run, None when it never concluded (killed) or its results.json is broken."""
        if not (self.path / RESULTS_FILE).exists():
            return None
        try:
            return load_run(self.path)
        except ConfigError as error:
            self.problem = str(error)
            return None

    @cached_property
    def plan(self) -> dict[str, Any] | None:
        if not (self.path / PLAN_FILE).exists():
            return None
        try:
            return read_plan(self.path)
        except ConfigError:
            return None

    @cached_property
    def cells(self) -> dict[str, CellResult]:
        """The concluded run's cells, else what cells/ holds (a killed run's finished cells)."""
        if self.result is not None:
            return {cell.cell_id: cell for cell in self.result.cells}
        return read_cells(self.path, strict=False)

    @property
    def run_id(self) -> str:
        if self.result is not None:
            return self.result.run_id
        return str((self.plan or {}).get("run_id") or self.path.name)

    @property
    def suite(self) -> str | None:
        if self.result is not None:
            return self.result.suite
        if self.plan is not None:
            return self.plan["suite"]
        return next((cell.suite for cell in self.cells.values()), None)

    @property
    def started_at(self) -> str | None:
        """When the run's measuring began (a merged run: its earliest shard's cell)."""
        if self.result is not None and self.result.started_at:
            return self.result.started_at
        return (self.plan or {}).get("started_at") or min(
            (c.started_at for c in self.cells.values() if c.started_at), default=None)

    @property
    def finished_at(self) -> str | None:
        return self.result.finished_at if self.result is not None else None

    @property
    def shard(self) -> str | None:
        return (self.plan or {}).get("shard")

    def gate(self) -> GateSettings:
        """The gate settings the run was judged with (the defaults when it never concluded)."""
        recorded = self.result.gate if self.result is not None else {}
        try:
            return GateSettings.from_dict(recorded) if recorded else GateSettings()
        except TypeError:  # written by a newer harness with more settings: the defaults, not a crash
            return GateSettings()

    def merged_from(self) -> list[str]:
        """The directory names of the shard runs a merged run was made from."""
        shards = (self.result.machine.get("shards") if self.result is not None else None) or []
        return [Path(str(shard.get("run", ""))).name for shard in shards if isinstance(shard, dict)]


@dataclass(frozen=True)
class Point:
    """One gated figure: a cell's metric in one run, with what the gate said of it."""

    suite: str  # the suite whose baselines gate it: the series' suite
    cell_id: str
    metric: str
    run_id: str
    run_suite: str  # the suite the run ran (local-defects for a planted defect gated as local)
    date: str | None  # the run's start, ISO 8601 UTC
    value: float | None  # None: the cell failed or did not run (see verdict)
    n: int | None = None
    stderr: float | None = None
    verdict: str | None = None  # harness.compare.State value; None for a run that never concluded
    expected: bool = False  # a canary's expected REGRESSED: its planted defect was caught
    baseline: float | None = None  # the baseline the run was gated against
    reason: str = ""
    engine: str | None = None
    engine_version: str | None = None
    engine_commit: str | None = None
    hardware: str | None = None
    harness_version: str | None = None
    run_dir: Path = field(default=Path("."), compare=False)
    sample: MetricSample | None = field(default=None, compare=False, repr=False)  # for the steps' paired tests

    @property
    def key(self) -> tuple[str, str, str]:
        return self.suite, self.cell_id, self.metric

    @property
    def planted(self) -> bool:
        """A planted defect, which must never stand for the suite's state: a canary's expected REGRESSED, or a
        run of another suite gated against this one's baselines (`baselines:`, as local-defects is local's)."""
        return self.expected or self.run_suite != self.suite

    @property
    def cell_dir(self) -> Path:
        return self.run_dir / CELLS_DIR / cell_dir_name(self.cell_id)

    def engine_label(self, unknown: str = "?") -> str:
        """`sglang 0.5.17 @ abc123`: what the point was measured with (`unknown` where the run names no engine)."""
        text = " ".join(x for x in (self.engine, self.engine_version) if x) or unknown
        return text + (f" @ {self.engine_commit}" if self.engine_commit else "")

    def to_record(self) -> dict[str, Any]:
        """The flat row of CSV, JSON and the DataFrame."""
        return {"suite": self.suite, "cell": self.cell_id, "metric": self.metric, "run": self.run_id,
                "run_suite": self.run_suite, "date": self.date, "value": self.value, "n": self.n,
                "stderr": self.stderr, "verdict": self.verdict, "expected": self.expected, "baseline": self.baseline,
                "engine": self.engine, "engine_version": self.engine_version, "engine_commit": self.engine_commit,
                "hardware": self.hardware, "harness_version": self.harness_version, "run_dir": str(self.run_dir)}


RECORD_COLUMNS = tuple(Point("", "", "", "", "", None, None).to_record())


class History:
    """The runs under some report roots, oldest first; shard runs a merged run was made from are left out of
    the series (the merged run holds the same cells)."""

    def __init__(self, records: list[RunRecord], gated_as: dict[str, str] | None = None):
        self.records = records
        self.gated_as = gated_as or {}  # suite -> the suite whose baselines gate it

    @classmethod
    def load(cls, roots: Iterable[Path], *, suites_dir: Path | None = None, must_exist: bool = False) -> History:
        """Every run under the roots. `suites_dir`: where suites say whose baselines gate them (see module).
        `must_exist`: a root that is not a directory is a ConfigError (a root named on the command line)."""
        roots = list(roots)
        for root in roots if must_exist else ():
            if not root.is_dir():
                raise ConfigError(f"{root}: no such directory of runs")
        seen: dict[str, RunRecord] = {}
        for path in run_dirs(roots):
            record = RunRecord(path)
            seen.setdefault(record.run_id, record)  # the same run under two roots (a copy): the first root's
        records = sorted(seen.values(), key=lambda r: (r.started_at or "", r.run_id))
        return cls(records, _baseline_suites(suites_dir) if suites_dir is not None else None)

    @cached_property
    def runs(self) -> list[RunRecord]:
        """The runs the series are made of: every run but the shards of a merged run that is also here."""
        merged = {name for record in self.records for name in record.merged_from()}
        return [r for r in self.records if not (r.shard and r.path.name in merged)]

    def suite_of(self, run_suite: str) -> str:
        return self.gated_as.get(run_suite, run_suite)

    @cached_property
    def points(self) -> list[Point]:
        return [point for record in self.runs for point in _points(record, self.suite_of(record.suite or "?"))]

    def series(self) -> dict[tuple[str, str, str], list[Point]]:
        """(suite, cell, metric) -> its points, oldest run first."""
        out: dict[tuple[str, str, str], list[Point]] = {}
        for point in self.points:
            out.setdefault(point.key, []).append(point)
        return out

    def records_table(self) -> list[dict[str, Any]]:
        return [point.to_record() for point in self.points]

    def frame(self) -> pandas.DataFrame:
        """cell x metric x run as a pandas DataFrame, one row per point (columns: RECORD_COLUMNS; `date` parsed)."""
        import pandas

        frame = pandas.DataFrame(self.records_table(), columns=list(RECORD_COLUMNS))
        frame["date"] = pandas.to_datetime(frame["date"], utc=True, format="ISO8601")
        frame["n"] = frame["n"].astype("Int64")  # question counts, absent for memory and accept length
        return frame

    def gate_for(self, suite: str) -> GateSettings:
        """The gate settings of the suite's newest concluded run (the defaults when none concluded)."""
        for record in reversed(self.runs):
            if record.result is not None and self.suite_of(record.suite or "") == suite:
                return record.gate()
        return GateSettings()


def _baseline_suites(suites_dir: Path) -> dict[str, str]:
    """suite -> its `baselines:` suite, for every suite file that loads (others gate themselves)."""
    from harness.suite import load_suite

    out = {}
    for path in sorted(suites_dir.glob("*.yaml")):
        try:
            suite = load_suite(path)
        except ConfigError:
            continue
        out[suite.name] = suite.baselines or suite.name
    return out


def _points(record: RunRecord, suite: str) -> Iterator[Point]:
    """A run's points: every measured gated figure with its verdict, then the verdicts that had no figure
    (a cell that failed or did not run: value None)."""
    verdicts = {(v["cell_id"], v["metric"]): v for v in (record.result.verdicts if record.result else ())}
    machine = record.result.machine if record.result is not None else {}
    for cell in record.cells.values():
        common = _cell_facts(cell, machine)
        for metric, sample, stderr in _figures(cell):
            verdict = verdicts.pop((cell.cell_id, metric), {})
            yield Point(suite, cell.cell_id, metric, record.run_id, record.suite or "?", record.started_at,
                        sample.value, n=sample.n, stderr=stderr, run_dir=record.path, sample=sample,
                        **_verdict_facts(verdict), **common)
    for (cell_id, metric), verdict in verdicts.items():
        cell = record.cells.get(cell_id)
        yield Point(suite, cell_id, metric, record.run_id, record.suite or "?", record.started_at, None,
                    run_dir=record.path, **_verdict_facts(verdict), **(_cell_facts(cell, machine) if cell else {}))


def _figures(cell: CellResult) -> Iterator[tuple[str, MetricSample, float | None]]:
    """(metric, sample, standard error) of every gated figure the cell measured."""
    from harness.metrics import samples

    for metric, sample in samples(cell).items():
        eval_name, _, name = metric.partition(".")
        evaluated = cell.evals.get(eval_name)
        stderr = evaluated.metrics[name].stderr if evaluated is not None and name in evaluated.metrics else None
        yield metric, sample, stderr


def _cell_facts(cell: CellResult, run_machine: dict[str, Any]) -> dict[str, Any]:
    from harness.baselines import _hardware_summary

    engine = cell.engine or {}
    return {"engine": engine.get("name"), "engine_version": engine.get("version"),
            "engine_commit": engine.get("commit"), "hardware": _hardware_summary(cell.machine or run_machine),
            "harness_version": (cell.harness or {}).get("version")}


def _verdict_facts(verdict: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": verdict.get("state"), "expected": bool(verdict.get("expected")),
            "baseline": verdict.get("baseline"), "reason": verdict.get("reason") or ""}


# --- the readers the rest of harness asks --------------------------------------------------------------

def past_durations(roots: Iterable[Path], suite: str) -> dict[str, float]:
    """Cell id -> wall seconds of its newest measured run under the roots (failed cells say little: skipped).
    Every run directory's cells/ is read, concluded or not: a shard killed after some cells still timed them."""
    newest: dict[str, tuple[str, float]] = {}
    for run_dir in run_dirs(roots):
        for cell_id, result in read_cells(run_dir, strict=False).items():
            seconds = result.timings.get("total_s")
            if result.suite != suite or result.status != "ok" or not seconds:
                continue
            stamp = result.finished_at or ""
            if cell_id not in newest or stamp > newest[cell_id][0]:
                newest[cell_id] = (stamp, float(seconds))
    return {cell_id: seconds for cell_id, (_, seconds) in newest.items()}


def run_machine(run_dir: Path) -> dict[str, Any]:
    """The machine a run recorded in its results.json ({} for a run that never concluded)."""
    if not (run_dir / RESULTS_FILE).exists():
        return {}
    return open_run(run_dir).machine
