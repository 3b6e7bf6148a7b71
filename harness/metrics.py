"""The metrics the gate knows, and how each one is judged.

Metric keys are `<family>.<name>`: `gsm8k.accuracy`, `memory.weights_gib`, `spec.accept_length`.
Results, baselines and report rows all use these keys.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MetricKind(enum.Enum):
    ACCURACY = "accuracy"  # a proportion over n questions; higher is better; statistical test
    MEMORY_GIB = "memory_gib"  # GiB, max over ranks; lower is better; tolerance + ceiling
    ACCEPT_LENGTH = "accept_length"  # mean accepted tokens per verify step; higher is better
    # A mean over items (sequences) of a distance from a reference; lower is better; paired test on the
    # per-item values AND a minimum effect, or above a hard ceiling (harness.evals.numerics).
    DIVERGENCE = "divergence"


@dataclass(frozen=True)
class MetricDef:
    key: str
    kind: MetricKind
    description: str


METRICS: dict[str, MetricDef] = {
    m.key: m
    for m in (
        MetricDef("gsm8k.accuracy", MetricKind.ACCURACY, "GSM8K exact-match accuracy"),
        MetricDef("gpqa.accuracy", MetricKind.ACCURACY, "GPQA Diamond accuracy (mean over repeats)"),
        MetricDef("memory.weights_gib", MetricKind.MEMORY_GIB,
                  "weights on the device after load ('Load weight end ... mem usage'), max over TP ranks"),
        MetricDef("memory.load_peak_gib", MetricKind.MEMORY_GIB,
                  "peak before load + increase during load_weights (DEBUG lines of #18005), max over ranks"),
        MetricDef("memory.kv_cache_gib", MetricKind.MEMORY_GIB, "KV cache size, max over ranks"),
        MetricDef("memory.graph_gib", MetricKind.MEMORY_GIB, "CUDA/HIP graph capture memory, max over ranks"),
        MetricDef("memory.device_peak_gib", MetricKind.MEMORY_GIB,
                  "peak used memory per GPU from the device sampler (NVML, nvidia-smi, amd-smi, rocm-smi), max"),
        # A different quantity from a GPU's used memory, so a different metric: a CPU baseline must
        # never gate a GPU run's figure (or the reverse).
        MetricDef("memory.host_rss_peak_gib", MetricKind.MEMORY_GIB,
                  "peak RSS of the server's process tree, on machines without a GPU sampler"),
        MetricDef("spec.accept_length", MetricKind.ACCEPT_LENGTH, "speculative decoding average accept length"),
        MetricDef("numerics.kld", MetricKind.DIVERGENCE,
                  "mean KL(reference || candidate) of next-token distributions per position (top-k bucket bound)"),
        MetricDef("numerics.top1_disagreement", MetricKind.DIVERGENCE,
                  "share of positions whose most likely next token differs from the reference's"),
    )
}


def eval_of(metric_key: str) -> str:
    """The family a metric belongs to: the eval name for accuracies, else 'memory' or 'spec'."""
    return metric_key.split(".", 1)[0]
