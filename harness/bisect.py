"""`harness bisect`: which engine build of a series brought a regression, by the gate's own verdicts.

The good end is measured first, then the bad end, gated against the good build's figures; the metric that
regressed most significantly there drives the search (harness.bisection). Each step is a harness run of the
one cell (harness.pipeline) in `<bisect dir>/steps/build-NN/`, with the build's Python, or its source checkout
first on the servers' PYTHONPATH, gated against the good build's figures. The directory keeps every step:
Ctrl-C stops after tearing the server down, and `--resume DIR` measures only what is missing (an interrupted
step is resumed as `harness run --resume` would).

Exit codes: 0 the first bad build was found; 2 the bad end does not reproduce (nothing to bisect), the good
end is not good, or bad input; 3 infrastructure made it impossible (an end not measurable, or skipped builds
hiding the first bad one); 4 a bug in harness; 130 interrupted. 1 stays the regression code of a gated run:
a bisect reports a regression it was given, it does not detect one.
"""

from __future__ import annotations

import datetime as _dt
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from harness import schema
from harness.baselines import BaselineEntry, Baselines, entries_from_result
from harness.bisection import (
    STATE_FILE,
    Call,
    Conclusion,
    Evidence,
    Judgement,
    Setup,
    bounds,
    driving_verdict,
    judge,
    known_metric,
    next_index,
)
from harness.compare import Verdict, compare_cell
from harness.engines.builds import Build, checkout, git_series, pick, read_builds_file, remove_checkout
from harness.errors import EXIT_INFRA, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConfigError
from harness.pipeline import RunRequest, checked_run_id, plan, say
from harness.results import STATUS_OK, CellResult, RunResult, now_iso

EVIDENCE_FILE = "evidence.md"


@dataclass(frozen=True)
class BisectRequest:
    suite: str | None = None
    cell: str | None = None
    good: str | None = None
    bad: str | None = None
    engine_src: Path | None = None
    src_subdir: str = "."  # where the engine's package lies inside the source tree (SGLang's repository: python)
    builds_file: Path | None = None
    metric: str | None = None
    python: str | None = None
    run_id: str | None = None
    resume: Path | None = None
    api_key: str | None = None
    suites_dir: Path = Path("suites")
    baselines_dir: Path = Path("baselines")
    bisects_dir: Path = Path("bisects")


class _Stop(Exception):  # noqa: N818 - control flow: the bisect ends here with this exit code and line
    def __init__(self, code: int, line: str):
        super().__init__(line)
        self.code = code


def bisect(request: BisectRequest) -> int:
    """Run (or resume) a bisect; prints the conclusion and the evidence table, returns the exit code."""
    directory, setup = _resumed(request) if request.resume else _started(request)
    evidence = Evidence(setup)
    say(f"bisect {directory}: {len(setup.builds)} builds, cell {setup.cell} of suite {setup.suite}")
    try:
        conclusion = _search(_Steps(directory, setup, request), evidence)
        code, line = (EXIT_OK, None) if conclusion.found else (EXIT_INFRA, _hidden_by_skips(setup, conclusion))
    except _Stop as stop:
        conclusion, code, line = None, stop.code, str(stop)
    except KeyboardInterrupt:
        print(f"harness: bisect interrupted; every finished step is kept: harness bisect --resume {directory}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    from harness.report.bisect import render_bisect

    text = render_bisect(evidence, conclusion, line, code)
    schema.write_atomic(directory / EVIDENCE_FILE, text)
    print(text, end="")
    print(f"bisect: {directory}/ ({EVIDENCE_FILE}, steps/)")
    return code


def _started(request: BisectRequest) -> tuple[Path, Setup]:
    """A new bisect: the one cell, the series of builds from good to bad, its directory and bisect.json."""
    if request.suite is None or request.cell is None:
        raise ConfigError("harness bisect: --suite and --cell are required (or --resume DIR)")
    if request.metric is not None and not known_metric(request.metric):
        raise ConfigError(f"--metric {request.metric}: no such metric")
    the_plan = plan(request.suite, suites_dir=request.suites_dir, baselines_dir=request.baselines_dir,
                    cell_patterns=[request.cell])
    if len(the_plan.cells) != 1:
        found = ", ".join(c.id for c in the_plan.cells[:5])
        raise ConfigError(f"--cell {request.cell}: must name exactly one cell of suite {request.suite}, "
                          f"matched {len(the_plan.cells)}{f' ({found})' if found else ''}")
    setup = Setup(suite=the_plan.suite.name, cell=the_plan.cells[0].id, builds=tuple(_series(request)),
                  source=str(request.engine_src.absolute()) if request.engine_src else None,
                  src_subdir=request.src_subdir, python=request.python, metric=request.metric)
    run_id = checked_run_id(request.run_id) or \
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{setup.suite}"
    directory = request.bisects_dir / run_id
    if directory.exists():
        raise ConfigError(f"{directory}: exists already (resume it with --resume, or choose another --run-id)")
    directory.mkdir(parents=True)
    schema.write_json(directory / STATE_FILE, setup.to_dict())
    return directory, setup


def _series(request: BisectRequest) -> list[Build]:
    if (request.engine_src is None) == (request.builds_file is None):
        raise ConfigError("harness bisect: give exactly one of --engine-src DIR and --builds FILE")
    if request.engine_src is not None:
        if request.good is None or request.bad is None:
            raise ConfigError("--engine-src: --good and --bad name the two revisions")
        return git_series(request.engine_src, request.good, request.bad)
    assert request.builds_file is not None
    builds = read_builds_file(request.builds_file)
    good = pick(builds, request.good, "--good") if request.good else 0
    bad = pick(builds, request.bad, "--bad") if request.bad else len(builds) - 1
    if good >= bad:
        raise ConfigError(f"--builds {request.builds_file}: the good build must come before the bad one")
    return builds[good:bad + 1]


def _resumed(request: BisectRequest) -> tuple[Path, Setup]:
    assert request.resume is not None
    given = [flag for flag, value in (("--suite", request.suite), ("--cell", request.cell), ("--good", request.good),
                                      ("--bad", request.bad), ("--engine-src", request.engine_src),
                                      ("--builds", request.builds_file), ("--metric", request.metric),
                                      ("--python", request.python)) if value]
    if given:
        raise ConfigError(f"--resume: the bisect directory's {STATE_FILE} decides; drop {', '.join(given)}")
    return request.resume, Setup.read(request.resume)


def _search(steps: _Steps, evidence: Evidence) -> Conclusion:
    """Both ends, then the builds between them until the first bad one is pinned (or skips hide it)."""
    setup, last = evidence.setup, len(evidence.setup.builds) - 1
    good = evidence.good = steps.measure(0, None, evidence)
    if good is None or good.status != STATUS_OK:
        _good_end_failed(good)
    figures = steps.figures(good)
    bad = steps.measure(last, figures, evidence)
    if bad is None:
        raise _Stop(EXIT_INFRA, "the bad end left no result: nothing can be bisected")
    verdicts = compare_cell(setup.cell, bad, figures, steps.gate)
    driver = driving_verdict(verdicts, setup.metric)
    if driver is None:
        if bad.status != STATUS_OK:
            raise _Stop(EXIT_INFRA, f"the bad end could not be measured ({_cause(bad)}): nothing can be bisected")
        what = f"{setup.metric} did not regress" if setup.metric else "no gated figure regressed"
        evidence.judgements[last] = Judgement(Call.GOOD, _closest(verdicts, setup.metric), reason="does not reproduce")
        raise _Stop(EXIT_USAGE, f"the bad end does not reproduce: {what} against the good build; nothing to bisect")
    evidence.judgements[last] = Judgement(Call.BAD, driver, reason=driver.reason)
    bad_figures = steps.figures(bad) if bad.status == STATUS_OK else {}
    say(f"bisect: the bad end regressed {driver.metric} ({driver.reason}): it drives the search")
    while (index := next_index(evidence.calls)) is not None:
        result = steps.measure(index, figures, evidence)
        judgement = (judge(result, driver, figures, bad_figures, steps.gate) if result is not None
                     else Judgement(Call.SKIP, reason="no result"))
        evidence.judgements[index] = judgement
        undecided = " (undecided)" if judgement.undecided else ""
        say(f"bisect: {setup.builds[index].label}: {judgement.call.value}{undecided}: {judgement.reason}")
    return bounds(evidence.calls)


def _closest(verdicts: list[Verdict], metric: str | None) -> Verdict | None:
    """The bad end's verdict that came nearest to regressing (the evidence table shows it): `metric`'s, else the
    lowest p-value's, else the first figure's."""
    measured = [v for v in verdicts if v.value is not None and (metric is None or v.metric == metric)]
    tested = [v for v in measured if v.p_value is not None]
    return min(tested, key=lambda v: v.p_value if v.p_value is not None else 1.0) if tested else (measured[0] if measured else None)


def _good_end_failed(good: CellResult | None) -> NoReturn:
    from harness.bisection import is_load_regression

    if good is not None and is_load_regression(good):
        raise _Stop(EXIT_USAGE, f"the good end is not good: it failed to load ({_cause(good)})")
    detail = f" ({_cause(good)})" if good is not None else ""
    raise _Stop(EXIT_INFRA, f"the good end could not be measured{detail}: there is nothing to gate against")


def _cause(result: CellResult) -> str:
    return f"{result.error.cause}: {result.error.message}" if result.error else result.status


def _hidden_by_skips(setup: Setup, conclusion: Conclusion) -> str:
    labels = ", ".join(setup.builds[i].label.split(" ")[0] for i in conclusion.candidates())
    return (f"the first bad build is one of {len(conclusion.candidates())} ({labels}): the builds between "
            f"could not be measured (skipped)")


class _Steps:
    """Measures builds: one harness run of the cell per build, kept in the bisect directory."""

    def __init__(self, directory: Path, setup: Setup, request: BisectRequest):
        from harness.suite import find_suite, load_suite

        self.directory, self.setup, self.request = directory, setup, request
        self.gate = load_suite(find_suite(setup.suite, request.suites_dir)).gate

    def figures(self, result: CellResult) -> dict[str, BaselineEntry]:
        """A measured step's figures as the entries later steps are gated against (paired where they can be)."""
        run = RunResult(run_id=self.directory.name, suite=self.setup.suite, planned=(result.cell_id,),
                        cells=(result,), machine=result.machine or {})
        return entries_from_result(self.setup.suite, result, run, now_iso()[:10])

    def measure(self, index: int, figures: dict[str, BaselineEntry] | None, evidence: Evidence) -> CellResult | None:
        """The build's result: the step kept from an earlier invocation, else measured now."""
        from harness import rundir
        from harness.history import read_cells

        step_dir = self.directory / "steps" / f"build-{index:02d}"
        kept = read_cells(step_dir).get(self.setup.cell) if step_dir.exists() else None
        if kept is not None and rundir.finished(kept, retry_failed=False):
            evidence.kept.append(index)
            return kept
        build = self.setup.builds[index]
        say(f"bisect: measuring build {index} of {len(self.setup.builds) - 1}: {build.label}")
        code = self._run(step_dir, build, Baselines(self.setup.suite, step_dir, {self.setup.cell: figures or {}}))
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code == EXIT_INTERNAL:
            raise _Stop(EXIT_INTERNAL, f"a bug in harness stopped the step of {build.label} ({step_dir})")
        evidence.measured.append(index)
        return read_cells(step_dir).get(self.setup.cell)

    def _run(self, step_dir: Path, build: Build, gate_against: Baselines) -> int:
        from harness import pipeline
        from harness.history import PLAN_FILE

        step_request = functools.partial(
            RunRequest, python=build.python or self.setup.python, api_key=self.request.api_key, preflight=False,
            gate_against=gate_against, console=False, suites_dir=self.request.suites_dir,
            baselines_dir=self.request.baselines_dir, reports_dir=step_dir.parent)
        resume = step_dir if (step_dir / PLAN_FILE).exists() else None
        if resume is None and step_dir.exists() and not any(step_dir.iterdir()):
            step_dir.rmdir()  # made, then interrupted before its plan: nothing of it to keep
        request = (step_request(resume=resume) if resume else
                   step_request(suite=self.setup.suite, cells=[self.setup.cell], run_id=step_dir.name))
        if build.revision is None:
            return pipeline.run(request)
        assert self.setup.source is not None
        source, worktree = Path(self.setup.source), self.directory / "worktrees" / step_dir.name
        checkout(source, build.revision, worktree)
        try:
            pythonpath = str((worktree / self.setup.src_subdir).absolute())
            from dataclasses import replace

            return pipeline.run(replace(request, engine_pythonpath=(pythonpath,)))
        finally:
            remove_checkout(source, worktree)
