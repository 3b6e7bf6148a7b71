"""The run as a pipeline of small steps (nox's workflow):

load suite -> expand matrix -> select -> run cells -> collect -> compare -> report -> exit code.
Each step is a function returning data; only the cell runner touches processes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.baselines import Baselines, baseline_path, load_baselines
from harness.compare import Verdict, compare_results, exit_code
from harness.errors import ConfigError
from harness.matrix import Cell, expand, select
from harness.protocols import protocol_differences, protocol_of
from harness.report import write_reports
from harness.results import CellResult, RunResult, now_iso, write_cell_result
from harness.strict import Where, did_you_mean
from harness.suite import Suite, find_suite, load_suite

if TYPE_CHECKING:
    from harness.schedule import Placement

CellRunner = Callable[[Cell, Path, list[int]], CellResult]  # (cell, run dir, its GPUs) -> result


@dataclass(frozen=True)
class Plan:
    suite: Suite
    cells: list[Cell]
    baselines: Baselines


def plan(suite_name: str, *, suites_dir: Path, baselines_dir: Path, cell_patterns: list[str] | None) -> Plan:
    suite = load_suite(find_suite(suite_name, suites_dir))
    every_cell = expand(suite)
    baselines = load_baselines(baseline_path(baselines_dir, suite.baselines))
    if baselines.cells:
        # `harness validate`'s check: a baseline whose cell is gone is an error, not a gate silently off.
        # A suite gated against another suite's baselines (local-defects) is checked against that suite.
        owner = every_cell if suite.baselines == suite.name else expand(load_suite(find_suite(suite.baselines,
                                                                                              suites_dir)))
        check_baselines(baselines, {baselines.suite: {cell.id: cell for cell in owner}})
    return Plan(suite, select(every_cell, cell_patterns), baselines)


def check_baselines(baselines: Baselines, suites: dict[str, dict[str, Cell]]) -> int:
    """Every baseline entry names a cell and an eval protocol of its suite; returns how many entries there are.
    A baseline whose cell no longer exists is an error, never silently ignored (its gate would be off)."""
    where = Where(str(baselines.path))
    if baselines.suite not in suites:
        raise where.error(f"no suite '{baselines.suite}'{did_you_mean(baselines.suite, suites)}")
    cells = suites[baselines.suite]
    count = 0
    for cell_id, metrics in baselines.cells.items():
        if cell_id not in cells:
            raise where.key("cells").key(cell_id).error(
                f"no such cell in suite '{baselines.suite}'{did_you_mean(cell_id, cells)}"
            )
        declared = {e.name: protocol_of(e) for e in cells[cell_id].evals}
        for metric, entry in metrics.items():
            count += 1
            if entry.protocol is None:
                continue
            eval_name = metric.split(".", 1)[0]
            metric_where = where.key("cells").key(cell_id).key(metric)
            if eval_name not in declared:
                raise metric_where.error(f"the suite runs no '{eval_name}' eval for this cell")
            differences = protocol_differences(declared[eval_name], entry.protocol, result_may_be_unknown=True)
            if differences:
                raise metric_where.key("protocol").error(
                    "differs from the suite's, so the gate could never compare: " + "; ".join(differences)
                )
    return count


def new_run_id(suite: str) -> str:
    return f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{suite}"


def make_run_dir(reports_dir: Path, run_id: str) -> Path:
    run_dir = reports_dir / run_id
    if run_dir.exists():
        # Results already measured are never overwritten.
        raise ConfigError(f"{run_dir}: a run with this id exists already; choose another --run-id")
    run_dir.mkdir(parents=True)
    return run_dir


def run_cells(cells: list[Cell], run_dir: Path, runner: CellRunner, host_gpus: list[int],
              progress: Callable[[str], None] = lambda line: None,
              max_parallel: int | None = None) -> tuple[list[CellResult], bool]:
    """Run the cells packed onto the host's GPUs, writing each result as soon as it exists so that nothing
    measured is lost. Returns the results and whether the run was interrupted (Ctrl-C); the cells in
    flight when that happened are kept, with what they had measured."""
    from harness.schedule import run_packed, too_large

    for cell in too_large(cells, len(host_gpus)):
        progress(f"{cell.id}: needs {cell.gpus} GPUs, this host has {len(host_gpus)}: not run")
    done = 0

    def started(placement: Placement) -> None:
        where = f"GPUs {','.join(map(str, placement.devices))}" if placement.devices else "CPU"
        progress(f"{placement.cell.id}: launching on {where}")

    def finished(result: CellResult) -> None:
        nonlocal done
        done += 1
        write_cell_result(run_dir, result)
        status = result.status if result.error is None else f"{result.status} ({result.error.cause})"
        progress(f"[{done}/{len(cells)}] {result.cell_id}: {status} in {result.timings.get('total_s', 0):.1f} s")

    return run_packed(cells, host_gpus, lambda cell, devices: runner(cell, run_dir, devices),
                      on_start=started, on_done=finished, max_parallel=max_parallel)


def conclude(the_plan: Plan, run_id: str, run_dir: Path, results: list[CellResult], *, started_at: str,
             machine: dict) -> tuple[RunResult, list[Verdict]]:
    """Compare, write every report, and return the run with its verdicts and exit code."""
    planned = [c.id for c in the_plan.cells]
    verdicts = compare_results(planned, {r.cell_id: r for r in results}, the_plan.baselines,
                               the_plan.suite.gate, {c.id: c.fix for c in the_plan.cells},
                               {c.id: c.baseline_id for c in the_plan.cells if c.baseline_id})
    run = RunResult(
        run_id=run_id, suite=the_plan.suite.name, planned=tuple(planned), cells=tuple(results),
        verdicts=tuple(v.to_dict() for v in verdicts), exit_code=exit_code(verdicts), machine=machine,
        started_at=started_at, finished_at=now_iso(), gate=asdict(the_plan.suite.gate),
    )
    write_reports(run_dir, run, verdicts)
    return run, verdicts
