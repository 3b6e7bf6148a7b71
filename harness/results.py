"""The result schema: one versioned record per cell, and the run that holds them.

A cell result keeps what the gate needs (metrics with n and SE, per-question outcomes by id,
memory figures, accept length) and what makes it reproducible (resolved cell config, eval
protocol, machine, engine and harness versions). It never holds question text.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__, schema
from harness.errors import ConfigError


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


STATUS_OK = "ok"
STATUS_INFRA_ERROR = "infra_error"
STATUS_CONFIG_ERROR = "config_error"
STATUSES = (STATUS_OK, STATUS_INFRA_ERROR, STATUS_CONFIG_ERROR)


@dataclass(frozen=True)
class QuestionOutcome:
    id: str
    correct: bool
    extracted: str | None = None
    error: str | None = None  # a request that failed is counted here, never silently scored wrong


@dataclass(frozen=True)
class Metric:
    value: float
    n: int | None = None
    stderr: float | None = None


@dataclass(frozen=True)
class EvalResult:
    name: str
    protocol: dict[str, Any]
    metrics: dict[str, Metric]  # "accuracy" is the gated one; others are informative
    outcomes: tuple[QuestionOutcome, ...] = ()
    request_errors: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # Per-item values of gated metrics that are means over items (numerics: metric -> sequence id -> value),
    # for the gate's paired test; and an eval's own facts (confidence intervals, token counts, ...).
    item_values: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def outcome_map(self) -> dict[str, bool] | None:
        """Question id -> correct, over the questions that got an answer; None when none were kept."""
        if not self.outcomes:
            return None
        return {o.id: o.correct for o in self.outcomes if o.error is None}


@dataclass(frozen=True)
class CellError:
    cause: str  # a failure class from the engine's log classifier, e.g. "oom", "weight_shape_mismatch"
    message: str
    log_tail: str = ""


@dataclass(frozen=True)
class MetricSample:
    """One gated figure of a cell, as the comparison reads it."""

    value: float
    n: int | None = None
    outcomes: dict[str, bool] | None = None
    protocol: dict[str, Any] | None = None
    values: dict[str, float] | None = None  # per-item values (MetricKind.DIVERGENCE)
    sequential: dict[str, Any] | None = None  # the eval's sequential record (harness.sequential.record)


@dataclass(frozen=True)
class CellResult:
    cell_id: str
    suite: str
    status: str
    cell: dict[str, Any]
    evals: dict[str, EvalResult] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)  # gated memory figures in GiB, key without "memory."
    memory_report: dict[str, Any] = field(default_factory=dict)  # per-rank detail from the log parser
    accept_length: float | None = None
    # The speculative counters the accept length came from (the server's average before and after the eval)
    # and the per-request figures of a short probe after it: a cross-check, not gated.
    spec: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    harness: dict[str, Any] = field(default_factory=lambda: {"version": __version__})
    error: CellError | None = None
    started_at: str | None = None
    finished_at: str | None = None
    # Preflight rule results, the predicted weight memory and its comparison with the measured figure
    # (harness.preflight); empty when preflight did not run.
    preflight: dict[str, Any] = field(default_factory=dict)

    @property
    def fix(self) -> str | None:
        fix = self.cell.get("fix")
        return fix.get("id") if isinstance(fix, dict) else None


def cell_result_to_dict(result: CellResult) -> dict[str, Any]:
    body = dataclasses.asdict(result)
    body["evals"] = {
        name: {**dataclasses.asdict(ev), "outcomes": [_outcome_to_dict(o) for o in ev.outcomes]}
        for name, ev in result.evals.items()
    }
    return {"kind": "harness.cell_result", "schema_version": schema.CURRENT_VERSIONS["harness.cell_result"], **body}


def _outcome_to_dict(outcome: QuestionOutcome) -> dict[str, Any]:
    # Compact: most questions have no error; leave the key out rather than writing null 1319 times.
    body = {"id": outcome.id, "correct": outcome.correct, "extracted": outcome.extracted}
    if outcome.error is not None:
        body["error"] = outcome.error
    return body


def cell_result_from_dict(document: dict[str, Any], path: Path) -> CellResult:
    document = schema.check_version(document, path, "harness.cell_result", migrate=True)
    try:
        evals = {
            name: EvalResult(
                name=ev["name"],
                protocol=dict(ev["protocol"]),
                metrics={k: Metric(**m) for k, m in ev["metrics"].items()},
                outcomes=tuple(QuestionOutcome(**o) for o in ev.get("outcomes", [])),
                request_errors=int(ev.get("request_errors", 0)),
                timings=dict(ev.get("timings", {})),
                item_values={k: dict(v) for k, v in ev.get("item_values", {}).items()},
                details=dict(ev.get("details", {})),
            )
            for name, ev in document.get("evals", {}).items()
        }
        error = document.get("error")
        status = document["status"]
        if status not in STATUSES:
            raise ConfigError(f"{path}: status: unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
        return CellResult(
            cell_id=document["cell_id"], suite=document["suite"], status=status,
            cell=dict(document["cell"]), evals=evals,
            memory={k: float(v) for k, v in document.get("memory", {}).items()},
            memory_report=dict(document.get("memory_report", {})),
            accept_length=document.get("accept_length"), spec=dict(document.get("spec", {})),
            timings=dict(document.get("timings", {})), machine=dict(document.get("machine", {})),
            engine=dict(document.get("engine", {})), harness=dict(document.get("harness", {})),
            error=None if error is None else CellError(**error),
            started_at=document.get("started_at"), finished_at=document.get("finished_at"),
            preflight=dict(document.get("preflight", {})),
        )
    except (KeyError, TypeError) as problem:
        raise ConfigError(f"{path}: malformed cell result: {_describe(problem)}") from None


def _describe(problem: Exception) -> str:
    if isinstance(problem, KeyError):
        return f"missing key {problem}"
    return " ".join(str(problem).split())


@dataclass(frozen=True)
class RunResult:
    run_id: str
    suite: str
    planned: tuple[str, ...]  # cell ids selected for this run, in order
    cells: tuple[CellResult, ...]
    verdicts: tuple[dict[str, Any], ...] = ()
    exit_code: int | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    harness_version: str = __version__
    gate: dict[str, Any] = field(default_factory=dict)

    def cell(self, cell_id: str) -> CellResult | None:
        return next((c for c in self.cells if c.cell_id == cell_id), None)


def run_to_dict(run: RunResult) -> dict[str, Any]:
    return {
        "kind": "harness.run",
        "schema_version": schema.CURRENT_VERSIONS["harness.run"],
        "run_id": run.run_id,
        "suite": run.suite,
        "harness_version": run.harness_version,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "machine": run.machine,
        "gate": run.gate,
        "planned": list(run.planned),
        "exit_code": run.exit_code,
        "verdicts": list(run.verdicts),
        "cells": [cell_result_to_dict(c) for c in run.cells],
    }


def run_from_dict(document: Any, path: Path) -> RunResult:
    document = schema.check_version(document, path, "harness.run", migrate=True)
    try:
        return RunResult(
            run_id=document["run_id"], suite=document["suite"], planned=tuple(document["planned"]),
            cells=tuple(cell_result_from_dict(c, path) for c in document["cells"]),
            verdicts=tuple(document.get("verdicts", [])), exit_code=document.get("exit_code"),
            machine=dict(document.get("machine", {})), started_at=document.get("started_at"),
            finished_at=document.get("finished_at"), harness_version=document.get("harness_version", "?"),
            gate=dict(document.get("gate", {})),
        )
    except (KeyError, TypeError) as problem:
        raise ConfigError(f"{path}: malformed run result: {_describe(problem)}") from None


def load_run(path: Path) -> RunResult:
    """A run from reports/<run>/ or its results.json."""
    if path.is_dir():
        path = path / "results.json"
    return run_from_dict(schema.read_document(path), path)


def cell_dir_name(cell_id: str) -> str:
    """A cell id as one path component: `glm5/quark-mxfp4/mtp/tp8` -> `glm5__quark-mxfp4__mtp__tp8`."""
    return cell_id.replace("/", "__")


def write_cell_result(run_dir: Path, result: CellResult) -> Path:
    path = run_dir / "cells" / cell_dir_name(result.cell_id) / "result.json"
    schema.write_json(path, cell_result_to_dict(result))
    return path


def write_run(run_dir: Path, run: RunResult) -> Path:
    path = run_dir / "results.json"
    schema.write_json(path, run_to_dict(run))
    return path
