"""A run directory as the record of a run: its plan, its per-cell results, resuming it, merging shards.

reports/<run-id>/plan.json names the suite and the planned cells when the run starts, so that a run
cut short can be resumed and shard runs can be merged; cells/<cell>/result.json are written atomically
as each cell finishes. Nothing measured is ever deleted: a cell run again keeps its earlier attempt as
result.attempt-N.json (and server.attempt-N.log).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from harness import schema
from harness.errors import ConfigError
from harness.history import PLAN_FILE, PLAN_KIND, read_cells, read_plan, run_machine
from harness.results import (
    STATUS_CONFIG_ERROR,
    STATUS_OK,
    CellResult,
    cell_dir_name,
    now_iso,
)


def write_plan(run_dir: Path, *, run_id: str, suite: str, cells: list[str], shard: str | None,
               kernels: str | None = None) -> None:
    """The run's plan; `kernels`: the --kernels override its cells ran with (a resumed run keeps it)."""
    body = {"kind": PLAN_KIND, "schema_version": schema.CURRENT_VERSIONS[PLAN_KIND], "run_id": run_id,
            "suite": suite, "shard": shard, "cells": cells, "started_at": now_iso()}
    if kernels:
        body["kernels"] = kernels
    schema.write_json(run_dir / PLAN_FILE, body)


def finished(result: CellResult, *, retry_failed: bool) -> bool:
    """Whether resuming leaves this cell alone. An interrupted cell never finished; with retry_failed,
    neither did one that failed for infrastructure reasons. Regressions and config failures are answers."""
    if result.error is not None and result.error.cause == "interrupted":
        return False
    if retry_failed:
        from harness.engines.failures import LOAD_REGRESSION_CAUSES

        return (result.status in (STATUS_OK, STATUS_CONFIG_ERROR)
                or (result.error is not None and result.error.cause in LOAD_REGRESSION_CAUSES))
    return True


def keep_previous_attempt(run_dir: Path, cell_id: str) -> None:
    """Move a cell's result and log aside before it runs again, so that nothing measured is lost."""
    cell_dir = run_dir / "cells" / cell_dir_name(cell_id)
    attempt = 1
    while (cell_dir / f"result.attempt-{attempt}.json").exists():
        attempt += 1
    for name, kept in (("result.json", f"result.attempt-{attempt}.json"),
                       ("server.log", f"server.attempt-{attempt}.log")):
        if (cell_dir / name).exists():
            (cell_dir / name).rename(cell_dir / kept)


def merge(run_dirs: list[Path], target: Path) -> tuple[str, list[str], dict[str, CellResult], list[dict[str, Any]]]:
    """Copy the shards' cells into `target`: (suite, planned cell ids, results, the shards' machines).

    The shards must come from one suite and share no cell: a cell measured twice has no single answer.
    """
    suite: str | None = None
    planned: list[str] = []
    owner: dict[str, Path] = {}
    results: dict[str, CellResult] = {}
    machines = []
    for run_dir in run_dirs:
        plan = read_plan(run_dir)
        if suite is not None and plan["suite"] != suite:
            raise ConfigError(f"{run_dir}: suite {plan['suite']!r}, but {run_dirs[0]} ran {suite!r}: "
                              f"only shards of one suite merge")
        suite = plan["suite"]
        for cell_id in plan["cells"]:
            if cell_id in owner:
                raise ConfigError(f"{run_dir}: cell {cell_id} was planned by {owner[cell_id]} too; "
                                  f"shards must not overlap")
            owner[cell_id] = run_dir
            planned.append(cell_id)
        shard_results = read_cells(run_dir)
        for cell_id, result in shard_results.items():
            if cell_id not in plan["cells"]:
                raise ConfigError(f"{run_dir}: holds a result for {cell_id}, which its plan.json does not list")
            results[cell_id] = result
            source = run_dir / "cells" / cell_dir_name(cell_id)
            shutil.copytree(source, target / "cells" / cell_dir_name(cell_id))
        machine = run_machine(run_dir)
        machines.append({"run": str(run_dir), "shard": plan.get("shard"), **machine})
    assert suite is not None
    return suite, planned, results, machines
