"""The metrics the gate knows, and how each one is judged: the engine's figures (memory, speculative
decoding) here, every eval's from harness.evals.registry.

Metric keys are `<family>.<name>`: `gsm8k.accuracy`, `memory.weights_gib`, `spec.accept_length`.
Results, baselines and report rows all use these keys.
"""

from __future__ import annotations

from harness.evals.registry import eval_metrics
from harness.memory import GATED
from harness.metric_kinds import MetricDef, MetricKind, Tolerance
from harness.results import CellResult, MetricSample

# Each gated memory figure is defined once, in harness.memory.GATED (how it is read, its tolerance).
MEMORY_METRICS: dict[str, MetricDef] = {
    f"memory.{figure.name}": MetricDef(f"memory.{figure.name}", MetricKind.MEMORY_GIB, figure.description,
                                        tolerance=figure.tolerance, depends_on_hardware=figure.depends_on_hardware)
    for figure in GATED
}
ENGINE_METRICS: dict[str, MetricDef] = {
    **MEMORY_METRICS,
    "spec.accept_length": MetricDef("spec.accept_length", MetricKind.ACCEPT_LENGTH,
                                    "speculative decoding average accept length"),
}

METRICS: dict[str, MetricDef] = {**eval_metrics(), **ENGINE_METRICS}


def samples(result: CellResult) -> dict[str, MetricSample]:
    """Every gated figure a cell measured, keyed by metric key, as the gate and the baselines read it."""
    out: dict[str, MetricSample] = {}
    for name, evaluation in result.evals.items():
        for metric_name, metric in evaluation.metrics.items():
            key = f"{name}.{metric_name}"
            if key not in METRICS:  # informative figures (invalid rate, latency, ...) are not gated
                continue
            counted = METRICS[key].kind.counted  # per-question outcomes, and the sequential gate's record
            out[key] = MetricSample(metric.value, metric.n, evaluation.outcome_map() if counted else None,
                                    evaluation.protocol, evaluation.item_values.get(metric_name),
                                    evaluation.details.get("sequential") if counted else None)
    for key, value in result.memory.items():
        out[f"memory.{key}"] = MetricSample(value)
    if result.accept_length is not None:
        out["spec.accept_length"] = MetricSample(result.accept_length)
    return out


def eval_of(metric_key: str) -> str:
    """The family a metric belongs to: the eval name for accuracies, else 'memory' or 'spec'."""
    return metric_key.split(".", 1)[0]


__all__ = ["ENGINE_METRICS", "MEMORY_METRICS", "METRICS", "MetricDef", "MetricKind", "Tolerance", "eval_of",
           "samples"]
