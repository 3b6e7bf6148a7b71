"""Run directories written by harness's own writers, for the history and site tests (no servers)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness import rundir
from harness.baselines import Baselines
from harness.compare import compare_results, exit_code
from harness.report import write_reports
from harness.results import CellResult, RunResult, write_cell_result
from harness.suite import GateSettings
from tests.builders import gsm8k_result, outcomes

CELL = "glm5/quark-mxfp4/mtp/tp8"


def night_result(accuracy_correct: int, *, memory: float = 40.0, accept: float = 2.7, version: str = "0.5.23",
                 commit: str | None = None, cell_id: str = CELL, suite: str = "glm5", day: int = 1) -> CellResult:
    result = gsm8k_result(cell_id, outcomes(accuracy_correct, 200), memory={"weights_gib": memory},
                          accept_length=accept)
    stamp = f"2026-11-{day:02d}T02:00:00Z"
    return dataclasses.replace(result, suite=suite, engine={"name": "sglang", "version": version, "commit": commit},
                               machine={"cpu": "AMD EPYC", "gpus": [{"name": "AMD Instinct MI300X"}] * 8},
                               timings={"total_s": 100.0 + day}, started_at=stamp, finished_at=stamp)


def write_run(root: Path, run_id: str, cells: list[CellResult], *, suite: str = "glm5", day: int = 1,
              baselines: Baselines | None = None, shard: str | None = None, machine: dict | None = None,
              conclude: bool = True, started_at: str | None = None) -> Path:
    """reports/<run_id>/ as `harness run` leaves it: plan.json, cells/*/result.json and, when the run
    concluded, results.json, summary.md and junit.xml with the gate's verdicts."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    rundir.write_plan(run_dir, run_id=run_id, suite=suite, cells=[c.cell_id for c in cells], shard=shard)
    for cell in cells:
        write_cell_result(run_dir, cell)
    if conclude:
        planned = [c.cell_id for c in cells]
        verdicts = compare_results(planned, {c.cell_id: c for c in cells},
                                   baselines or Baselines(suite, root / f"{suite}.yaml", {}), GateSettings())
        stamp = started_at or f"2026-11-{day:02d}T02:00:00Z"
        run = RunResult(run_id=run_id, suite=suite, planned=tuple(planned), cells=tuple(cells),
                        verdicts=tuple(v.to_dict() for v in verdicts), exit_code=exit_code(verdicts),
                        machine=machine or {"cpu": "AMD EPYC"}, started_at=stamp,
                        finished_at=stamp.replace("02:00", "03:00"), gate=dataclasses.asdict(GateSettings()))
        write_reports(run_dir, run, verdicts)
    return run_dir
