"""The run as a pipeline of small steps (nox's workflow):

load suite -> expand matrix -> select -> run cells -> collect -> compare -> report -> exit code.
Each step is a function returning data; only the cell runner touches processes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.baselines import Baselines, baseline_path, load_baselines
from harness.compare import Verdict, compare_results, exit_code
from harness.errors import ConfigError
from harness.matrix import Cell, expand, select
from harness.report import write_reports
from harness.results import CellResult, RunResult, now_iso, write_cell_result
from harness.suite import Suite, find_suite, load_suite

CellRunner = Callable[[Cell, Path], CellResult]


@dataclass(frozen=True)
class Plan:
    suite: Suite
    cells: list[Cell]
    baselines: Baselines


def plan(suite_name: str, *, suites_dir: Path, baselines_dir: Path, cell_patterns: list[str] | None) -> Plan:
    suite = load_suite(find_suite(suite_name, suites_dir))
    cells = select(expand(suite), cell_patterns)
    return Plan(suite, cells, load_baselines(baseline_path(baselines_dir, suite.baselines)))


def new_run_id(suite: str) -> str:
    return f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{suite}"


def make_run_dir(reports_dir: Path, run_id: str) -> Path:
    run_dir = reports_dir / run_id
    if run_dir.exists():
        # Results already measured are never overwritten.
        raise ConfigError(f"{run_dir}: a run with this id exists already; choose another --run-id")
    run_dir.mkdir(parents=True)
    return run_dir


def run_cells(cells: list[Cell], run_dir: Path, runner: CellRunner,
              progress: Callable[[str], None] = lambda line: None) -> tuple[list[CellResult], bool]:
    """Run each cell, writing its result as soon as it exists so that nothing measured is lost.

    Returns the results and whether the run was interrupted (Ctrl-C); the cell in flight when
    that happened is kept, with what it had measured.
    """
    from harness.cellrun import CellInterrupted  # the engine layer loads only when cells really run

    results: list[CellResult] = []
    for index, cell in enumerate(cells, 1):
        progress(f"[{index}/{len(cells)}] {cell.id}: launching")
        try:
            result = runner(cell, run_dir)
        except CellInterrupted as interrupted:
            write_cell_result(run_dir, interrupted.result)
            results.append(interrupted.result)
            return results, True
        except KeyboardInterrupt:
            return results, True
        write_cell_result(run_dir, result)
        results.append(result)
        status = result.status if result.error is None else f"{result.status} ({result.error.cause})"
        progress(f"[{index}/{len(cells)}] {cell.id}: {status} in {result.timings.get('total_s', 0):.1f} s")
    return results, False


def conclude(the_plan: Plan, run_id: str, run_dir: Path, results: list[CellResult], *, started_at: str,
             machine: dict) -> tuple[RunResult, list[Verdict]]:
    """Compare, write every report, and return the run with its verdicts and exit code."""
    planned = [c.id for c in the_plan.cells]
    verdicts = compare_results(planned, {r.cell_id: r for r in results}, the_plan.baselines,
                               the_plan.suite.gate, {c.id: c.fix for c in the_plan.cells})
    run = RunResult(
        run_id=run_id, suite=the_plan.suite.name, planned=tuple(planned), cells=tuple(results),
        verdicts=tuple(v.to_dict() for v in verdicts), exit_code=exit_code(verdicts), machine=machine,
        started_at=started_at, finished_at=now_iso(), gate=asdict(the_plan.suite.gate),
    )
    write_reports(run_dir, run, verdicts)
    return run, verdicts
