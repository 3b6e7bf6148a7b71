"""Small builders of results and baselines for the gate's tests (no I/O)."""

from __future__ import annotations

from harness.baselines import BaselineEntry, Provenance
from harness.evals.base import EvalConfig
from harness.protocols import protocol_of
from harness.results import CellError, CellResult, EvalResult, Metric, QuestionOutcome

GSM8K_PROTOCOL = protocol_of(EvalConfig(name="gsm8k", protocol="sglang-fewshot", shots=5, questions=1319,
                                        max_tokens=512, temperature=0.0, repeats=1))
PROVENANCE = Provenance(source="harness", date="2026-11-01", run_id="r0")


def outcomes(correct: int, total: int, offset: int = 0) -> dict[str, bool]:
    """`correct` right answers among `total` ids, the wrong ones starting at `offset`."""
    wrong = set(range(offset, offset + total - correct))
    return {f"q{i:04d}": i not in wrong for i in range(total)}


def gsm8k_result(cell_id: str, table: dict[str, bool] | None = None, *, value: float | None = None,
                 n: int | None = None, protocol: dict | None = None, memory: dict | None = None,
                 accept_length: float | None = None, fix: str | None = "glm5-mxfp4-mtp") -> CellResult:
    evals = {}
    if table is not None or value is not None:
        if table is not None:
            value = sum(table.values()) / len(table)
            n = len(table)
        evals["gsm8k"] = EvalResult(
            name="gsm8k", protocol=protocol or GSM8K_PROTOCOL,
            metrics={"accuracy": Metric(value, n, None)},
            outcomes=tuple(QuestionOutcome(q, ok, "42") for q, ok in (table or {}).items()),
        )
    return CellResult(cell_id=cell_id, suite="glm5", status="ok", cell={"fix": {"id": fix, "pr": "#1"}},
                      evals=evals, memory=memory or {}, accept_length=accept_length)


def failed_result(cell_id: str, cause: str, message: str = "boom", tail: str = "line1\nline2") -> CellResult:
    return CellResult(cell_id=cell_id, suite="glm5", status="infra_error", cell={},
                      error=CellError(cause, message, tail))


def accuracy_entry(table: dict[str, bool] | None = None, *, value: float | None = None, n: int | None = None,
                   floor: float | None = None, protocol: dict | None = None, metric="gsm8k.accuracy") -> BaselineEntry:
    if table is not None:
        value, n = sum(table.values()) / len(table), len(table)
    return BaselineEntry(metric=metric, provenance=PROVENANCE, value=value, n=n, floor=floor,
                         protocol=protocol if protocol is not None else dict(GSM8K_PROTOCOL), outcomes=table)


def memory_entry(value: float | None = None, ceiling: float | None = None,
                 metric: str = "memory.weights_gib") -> BaselineEntry:
    return BaselineEntry(metric=metric, provenance=PROVENANCE, value=value, ceiling=ceiling)
