"""Preflight as a pipeline step: every rule on a matrix cell's checkpoint (and draft), before any launch.

A cell whose preflight FAILs is never launched: it becomes a config-error result carrying the rule's
message. After a run, the measured load memory is compared with the predicted weight memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.axes import QUANT_KINDS
from harness.engine_specs import ENGINES
from harness.errors import ConfigError
from harness.loading.launch import Launch
from harness.loading.manifest import Manifest, load_hub_manifest, load_manifest
from harness.loading.online import WeightPrediction, predict_weight_memory
from harness.loading.releases import ReleaseChoice, choose
from harness.loading.rules import DRAFT_RULES, RULE_FIXES, RULES, Outcome, RuleResult
from harness.matrix import Cell
from harness.results import STATUS_CONFIG_ERROR, CellError, CellResult, now_iso
from harness.secrets import hub_token

# A measured load figure further than this from the prediction is reported (not gated): the prediction
# counts weights only, the measurement also holds whatever the engine allocates while loading.
PREDICTION_TOLERANCE_GIB = 0.5
PREDICTION_TOLERANCE_FRACTION = 0.10
MEASURED_LOAD_METRICS = ("load_peak_gib", "weights_gib")  # in order of preference (harness.metrics)


@dataclass(frozen=True)
class CellPreflight:
    cell_id: str
    checkpoint: str | None  # where the manifest was read from; None when it could not be
    unavailable: str | None = None  # why no manifest: preflight skipped, the cell launches
    results: tuple[RuleResult, ...] = ()
    prediction: WeightPrediction | None = None
    manifest: dict[str, Any] = field(default_factory=dict)  # Manifest.facts()
    loader: str | None = None  # whose loader behaviour the rules predicted (ReleaseChoice.describe())
    platform: str | None = None  # a platform limit the cell will meet after loading (never blocks a launch)

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if r.outcome is Outcome.FAIL]

    def message(self) -> str:
        return "; ".join(f"preflight {r.fix} ({r.pr}): {r.reason}" for r in self.failures)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"checkpoint": self.checkpoint,
                                "rules": [{"fix": r.fix, "pr": r.pr, "outcome": r.outcome.value, "reason": r.reason}
                                          for r in self.results]}
        if self.unavailable:
            body["unavailable"] = self.unavailable
        if self.loader:
            body["loader"] = self.loader
        if self.platform:
            body["platform"] = self.platform
        if self.manifest:
            body["manifest"] = self.manifest
        if self.prediction is not None:
            body["predicted_weights"] = self.prediction.to_dict()
        return body


@dataclass(frozen=True)
class CheckpointSource:
    """A local directory, or a hub id to read through the API (with a token), or why neither is possible."""

    local: Path | None = None
    hub_id: str | None = None
    unavailable: str | None = None
    token: str | None = field(default=None, repr=False)


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def locate(reference: str, *, token: str | None = None) -> CheckpointSource:
    """Where to read a checkpoint's headers: a directory, the local hub cache's snapshot, or the hub itself."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return CheckpointSource(local=path)
    if reference.count("/") == 1 and not reference.startswith((".", "/", "~")):
        snapshots = hub_cache_dir() / f"models--{reference.replace('/', '--')}" / "snapshots"
        ref = snapshots.parent / "refs" / "main"
        if ref.is_file() and (snapshots / ref.read_text().strip() / "config.json").is_file():
            return CheckpointSource(local=snapshots / ref.read_text().strip())
        token, refused = hub_token(token)  # harness.secrets: where a token may go
        if token:
            return CheckpointSource(hub_id=reference, token=token)
        return CheckpointSource(unavailable=f"{reference} is neither a directory nor in the hub cache "
                                            f"({snapshots.parent}); "
                                            + (refused or "set HF_TOKEN to read its headers from the hub"))
    return CheckpointSource(unavailable=f"{reference}: no such directory")


def read_manifest(source: CheckpointSource) -> Manifest:
    if source.local is not None:
        return load_manifest(source.local)
    assert source.hub_id is not None
    return load_hub_manifest(source.hub_id, token=source.token)


def engine_quantization(cell: Cell) -> str | None:
    """The --quantization value the engine will be given (None: the checkpoint's config decides)."""
    return cell.checkpoint.quantization or QUANT_KINDS[cell.quant].server_quantization


def check_checkpoint(label: str, reference: str, launch: Launch, *, draft: str | None = None,
                     token: str | None = None, release: ReleaseChoice | None = None) -> CellPreflight:
    """Every rule on a checkpoint as `launch` serves it, the draft rule of its speculative algorithm, and the
    weight-memory prediction. Reads headers only."""
    source = locate(reference, token=token)
    if source.unavailable:
        return CellPreflight(label, None, unavailable=source.unavailable)
    try:
        manifest = read_manifest(source)
    except ConfigError as problem:
        return CellPreflight(label, None, unavailable=str(problem))
    results = [rule(manifest, launch) for rule in RULES]
    draft_rule = DRAFT_RULES.get(launch.spec)
    if draft_rule is not None:
        from harness.fixes import FIXES

        fix = FIXES[RULE_FIXES[draft_rule.__name__]]
        draft_source = locate(draft, token=token) if draft else CheckpointSource(unavailable="no draft given")
        try:
            results.append(draft_rule(read_manifest(draft_source)) if not draft_source.unavailable else
                           RuleResult(fix.id, fix.pr, Outcome.NOT_APPLICABLE,
                                      f"draft not readable: {draft_source.unavailable}"))
        except ConfigError as problem:
            results.append(RuleResult(fix.id, fix.pr, Outcome.NOT_APPLICABLE, f"draft not readable: {problem}"))
    return CellPreflight(label, str(source.local or source.hub_id), results=tuple(results),
                         prediction=predict_weight_memory(manifest, launch.tp), manifest=manifest.facts(),
                         loader=(release or ReleaseChoice(launch.release, launch.release.version)).describe())


def cell_launch(cell: Cell, release: ReleaseChoice) -> Launch:
    """The launch a cell's server gets, as the rules read it."""
    return Launch(tp=cell.tp, quantization=engine_quantization(cell), release=release.release, ep=cell.ep or 1,
                  spec=cell.spec, server_args=tuple(cell.server.args), env=dict(cell.server.env),
                  vendor=cell.hardware.vendor, gpu_arch=tuple(cell.hardware.gpu_arch))


def check_cell(cell: Cell, *, token: str | None = None, engine_version: str | None = None) -> CellPreflight:
    """Preflight of a cell, predicting the loader of `engine_version` (the newest known release when unknown)."""
    release = choose(engine_version)
    check = check_checkpoint(cell.id, cell.checkpoint.path, cell_launch(cell, release),
                             draft=cell.draft.path if cell.draft else None, token=token, release=release)
    return replace(check, platform=platform_limit(cell))


def platform_limit(cell: Cell) -> str | None:
    """SGLang's Quark MXFP4 code calls aiter, which exists only on ROCm: on another device such a cell loads,
    then fails at its first MXFP4 forward (`aiter_missing`), unless the reference kernels stand in for aiter.
    A note, not a FAIL: the load itself (what the fixes are about) runs there."""
    from harness.kernels.selection import AITER_REFERENCE, NATIVE

    if (not ENGINES[cell.engine].calls_aiter or not QUANT_KINDS[cell.quant].needs_aiter or cell.hardware.vendor == "amd"
            or cell.kernels != NATIVE):
        return None
    return (f"predicts aiter_missing at the first MXFP4 forward on {cell.hardware.vendor} (aiter is ROCm-only): "
            f"set server: {{kernels: {AITER_REFERENCE}}} in the suite, or pass --kernels {AITER_REFERENCE}")


def describe(check: CellPreflight) -> list[str]:
    """Plain lines for a terminal or a CI log."""
    lines = [f"{check.cell_id}  ({check.checkpoint or 'not readable'})"
             + (f"  [{check.loader}]" if check.loader else "")]
    if check.manifest:
        facts = check.manifest
        quant = facts.get("quantization") or {}
        lines.append(f"  {facts.get('architecture')}, {facts['tensors']} tensors, "
                     + ", ".join(f"{k} {v}" for k, v in facts.items() if k not in ("architecture", "tensors",
                                                                                    "quantization"))
                     + (f"; quantization {quant['method']}" if quant else "; unquantized"))
    if check.unavailable:
        lines.append(f"  {'SKIPPED':<15} {check.unavailable}; the cell launches unchecked")
    lines += [f"  {r.outcome.value:<15} {r.fix} ({r.pr}): {r.reason}" for r in check.results]
    if check.platform:
        lines.append(f"  {'PLATFORM':<15} {check.platform}")
    if check.prediction is not None:
        p = check.prediction
        lines.append(f"  predicted weights per rank at tp {p.tp}: BF16 {_size(p.bf16_gib)}, online MXFP4 "
                     f"{_size(p.online_mxfp4_gib)} (load peak {_size(p.online_mxfp4_load_peak_gib)}), "
                     f"pre-quantized MXFP4 {_size(p.prequantized_mxfp4_gib)}")
    return lines


def _size(gib: float) -> str:
    return f"{gib:.2f} GiB" if gib >= 0.1 else f"{gib * 1024:.2f} MiB"


def config_failure(cell: Cell, check: CellPreflight) -> CellResult:
    """The result of a cell that preflight kept from launching."""
    stamp = now_iso()
    return CellResult(cell_id=cell.id, suite=cell.suite, status=STATUS_CONFIG_ERROR, cell=cell.resolved(),
                      error=CellError("preflight", check.message()), started_at=stamp, finished_at=stamp,
                      preflight=check.to_dict())


def compare_with_prediction(prediction: WeightPrediction, quant: str, memory: dict[str, float]) -> dict[str, Any] | None:
    """The measured load figure against the predicted weight memory for the cell's quantization."""
    metric = next((key for key in MEASURED_LOAD_METRICS if key in memory), None)
    if metric is None:
        return None
    predicted, measured = prediction.for_quant(quant), memory[metric]
    tolerance = max(PREDICTION_TOLERANCE_GIB, PREDICTION_TOLERANCE_FRACTION * predicted)
    gap = measured - predicted
    return {"metric": f"memory.{metric}", "predicted_gib": round(predicted, 3), "measured_gib": round(measured, 3),
            "gap_gib": round(gap, 3), "tolerance_gib": round(tolerance, 3), "within_tolerance": abs(gap) <= tolerance}


def with_preflight(result: CellResult, cell: Cell, check: CellPreflight) -> CellResult:
    """A measured cell's result, carrying its preflight and the memory prediction's comparison."""
    import dataclasses

    body = check.to_dict()
    if check.prediction is not None:
        comparison = compare_with_prediction(check.prediction, cell.quant, result.memory)
        if comparison is not None:
            body["memory_vs_prediction"] = comparison
    return dataclasses.replace(result, preflight=body)
