"""The numerics eval against one server: its target (the stored reference, where to record), the measurement,
the comparison and the EvalResult."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from harness.evals.base import EvalConfig, EvalContext, EvalInfraError, Subject
from harness.evals.numerics.config import GATED, NAME, PROTOCOL, protocol_of, require_numpy
from harness.evals.numerics.divergence import Side, sequence_values, summarize
from harness.evals.numerics.engines import api_of
from harness.evals.numerics.logprobs import PositionTopK, parse_response, request_body
from harness.evals.numerics.reference import (
    RECORD_FILE,
    TopKSet,
    is_reference_cell,
    save_reference,
    stack,
    usable_reference,
)
from harness.evals.numerics.tokens import build_token_set, token_digest

if TYPE_CHECKING:
    from harness.results import EvalResult


class _Progress:
    """Sequences done, on the eval progress line's schedule (harness.evals.progress)."""

    def __init__(self, total: int, stream: TextIO | None):
        from harness.evals.progress import Progress

        self.inner = Progress(f"{NAME}/{PROTOCOL}", total, stream=stream)
        self.inner.line = self.line  # type: ignore[method-assign]

    def line(self, now: float | None = None) -> str:
        inner = self.inner
        elapsed = max((now or time.monotonic()) - inner.start, 1e-9)
        return (f"{inner.label}: {inner.done}/{inner.total} sequences, {inner.done / elapsed:.1f} seq/s, "
                f"{inner.errors} failed requests")


def sequence_id(index: int) -> str:
    return f"seq-{index:04d}"


def measure(api: str, base_url: str, model: str, windows: list[list[int]], config: EvalConfig,
            stream: TextIO | None = None) -> tuple[dict[str, PositionTopK], list[str], float]:
    """Every window's per-position top-k: (by sequence id, the errors of failed requests, wall seconds)."""
    from harness.transport import ClientSettings, Request, Response, run_requests

    k = config.params["top_logprobs"]
    by_id = {sequence_id(i): window for i, window in enumerate(windows)}
    requests = [Request(sid, *request_body(api, model, window, k), raw=True) for sid, window in by_id.items()]
    measured: dict[str, PositionTopK] = {}
    errors: list[str] = []
    progress = _Progress(len(requests), stream)

    def on_done(response: Response) -> None:
        error = response.error
        if error is None:
            try:  # parsed at once: a response's JSON is ~50 bytes per entry, the arrays 6
                measured[response.id] = parse_response(api, json.loads(response.text or ""), by_id[response.id], k)
            except (KeyError, IndexError, TypeError, ValueError) as problem:
                error = f"{response.id}: malformed logprobs: {type(problem).__name__}: {problem}"
        if error is not None:
            errors.append(error)
        progress.inner.update(None if error is not None else True)

    allowed = math.floor(config.max_error_rate * len(requests) + 1e-9)
    settings = ClientSettings(concurrency=config.concurrency, timeout_s=config.request_timeout_s, max_errors=allowed)
    start = time.perf_counter()
    run_requests(base_url, requests, settings, on_done)
    return measured, errors, time.perf_counter() - start


def compare_sets(reference: TopKSet, measured: dict[str, PositionTopK]) -> dict[str, dict[str, float]]:
    """Per-sequence values of every measured sequence against the reference's."""
    import numpy as np

    values = {}
    for index in range(reference.token_ids.shape[0]):
        sid = sequence_id(index)
        if sid not in measured:
            continue
        ref = Side(reference.ids[index], reference.logprobs[index].astype(np.float64),
                   reference.actual[index].astype(np.float64), reference.tail[index].astype(np.float64))
        cand = measured[sid]
        values[sid] = sequence_values(ref, Side(cand.ids, cand.logprobs, cand.actual, cand.tail),
                                      reference.token_ids[index, 1:])
    return values


@dataclass(frozen=True)
class Target:
    """Where one cell's numerics eval reads its reference and, for the reference cell, records its own."""

    engine: str
    reference: TopKSet | None
    record: Path | None = None
    recorded_meta: dict[str, Any] = field(default_factory=dict)  # cell, engine, run facts for the record


def target_for(subject: Subject, config: EvalConfig, cell_dir: Path, references: Path | None) -> Target:
    """The cell's reference (None where there is none yet) and, for the reference cell, where to record."""
    reference = usable_reference(config, references)[0] if references is not None else None
    recording = references is None or is_reference_cell(subject, config, references)
    meta = {"cell": subject.id, "suite": subject.suite, "engine": subject.engine, "model_path": subject.model_path}
    return Target(subject.engine, reference, cell_dir / RECORD_FILE if recording else None, meta)


def run(config: EvalConfig, base_url: str, *, model: str, target: Target, data_root: Path | None = None,
        stream: TextIO | None = None) -> EvalResult:
    """Measure the cell's next-token distributions; record them (reference cell) and compare them with the
    stored reference. Raises EvalInfraError when more requests failed than allowed."""
    api = api_of(target.engine)
    require_numpy()
    if target.reference is not None:
        windows = target.reference.token_ids.tolist()
        dataset_sha256 = target.reference.meta["protocol"]["dataset_sha256"]
    else:
        windows, dataset_sha256 = build_token_set(config, base_url, model, data_root)
    measured, errors, wall = measure(api, base_url, model, windows, config, stream)
    token_sha256 = token_digest(windows)
    reference_sha256 = None if target.reference is None else target.reference.meta["sha256"]
    protocol = protocol_of(config, dataset_sha256=dataset_sha256, token_sha256=token_sha256,
                           reference_sha256=reference_sha256)
    details: dict[str, Any] = {"api": api, "tokens": {"prompt": len(measured) * config.params["window"],
                                                      "generated": len(measured) * (api != "sglang-generate")}}
    if target.record is not None and not errors:
        meta = {**target.recorded_meta, "protocol": protocol_of(config, dataset_sha256=dataset_sha256,
                                                                token_sha256=token_sha256), "api": api}
        ordered = [measured[sequence_id(i)] for i in range(len(windows))]
        details["recorded"] = {"path": target.record.name, "sha256": save_reference(target.record,
                                                                                   stack(windows, ordered, meta))}
    result = _result(config, protocol, target.reference, measured, errors, wall, details)
    allowed = math.floor(config.max_error_rate * len(windows) + 1e-9)
    if len(errors) > allowed:
        raise EvalInfraError("request_errors", f"{NAME}: {len(errors)} of {len(windows)} requests failed "
                             f"(allowed {allowed}); first: {errors[0]}", {NAME: result})
    return result


def _result(config: EvalConfig, protocol: dict[str, Any], reference: TopKSet | None,
            measured: dict[str, PositionTopK], errors: list[str], wall: float,
            details: dict[str, Any]) -> EvalResult:
    from harness.results import EvalResult, Metric

    timings = {"wall_s": round(wall, 3), "sequences_per_s": round(len(measured) / wall, 2) if wall else 0.0,
               "prompt_tokens_per_s": round(details["tokens"]["prompt"] / wall, 1) if wall else 0.0}
    if reference is None:
        details["note"] = "no stored reference to compare with: these distributions are only recorded"
    if reference is None or not measured:
        return EvalResult(NAME, protocol, {}, request_errors=len(errors), timings=timings, details=details)
    per_sequence = compare_sets(reference, measured)
    summary = summarize(per_sequence)
    n = len(per_sequence)
    metrics = {name: Metric(round(value, 8), n, None if se is None or math.isnan(se) else round(se, 8))
               for name, (value, se, _) in summary.items()}
    details["ci95"] = {name: [round(low, 8), round(high, 8)] for name, (_, _, (low, high)) in summary.items()}
    item_values = {name: {sid: round(values[name], 10) for sid, values in per_sequence.items()} for name in GATED}
    return EvalResult(NAME, protocol, metrics, request_errors=len(errors), timings=timings, details=details,
                      item_values=item_values)


def run_in_cell(config: EvalConfig, base_url: str, model: str, context: EvalContext) -> EvalResult:
    """The registered run: the cell's target from its subject and the suite's stored references."""
    if context.subject is None or context.cell_dir is None:
        raise ValueError("the numerics eval runs inside a suite's cell: it needs the cell's reference")
    target = target_for(context.subject, config, context.cell_dir, context.references)
    return run(config, base_url, model=model, target=target, data_root=context.data_root, stream=context.stream)
