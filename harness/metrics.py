"""The metrics the gate knows, and how each one is judged: the engine's figures (memory, speculative
decoding) here, every eval's from harness.evals.registry.

Metric keys are `<family>.<name>`: `gsm8k.accuracy`, `memory.weights_gib`, `spec.accept_length`.
Results, baselines and report rows all use these keys.
"""

from __future__ import annotations

from harness.evals.registry import eval_metrics
from harness.kernels.selection import kernels_of
from harness.metric_kinds import MetricDef, MetricKind, Tolerance
from harness.results import CellResult, MetricSample

# Memory tolerances per figure, each from what moves it between runs of the same build:
# - weights: the checkpoint's bytes on the device, as SGLang's log prints them (0.01 GiB): 3%, at least two
#   rounding steps. Leaving one MXFP4 layer in BF16 costs it several times that.
# - load peak, KV cache: the KV pool is sized from the memory left after loading (mem-fraction-static); the
#   rig's repeated cells agree within 0.01 GiB of 41.68: 5%, at least 0.05 GiB.
# - graph capture: CUDA/HIP graphs' pool varies with the captured batch sizes: 10%, at least 0.05 GiB.
# - device peak: a 0.5 s sampler of the GPU's used memory (driver context included): 5%, at least 0.25 GiB.
# - host RSS: the server process tree's peak RSS on a CPU machine: 20%, at least 0.05 GiB. Measured on the
#   local suite (6 runs of its 3 cells, docs/gate.md): run-to-run spread up to 3.8% within one install,
#   8-12% between a fresh install of the same packages and another. The old rule, max(0.5 GiB, 5%), let +33%
#   through at 0.6 GiB; this one stops anything over +20%.
TOLERANCES = {
    "weights_gib": Tolerance(rel=0.03, abs_gib=0.02),
    "load_peak_gib": Tolerance(rel=0.05, abs_gib=0.05),
    "kv_cache_gib": Tolerance(rel=0.05, abs_gib=0.05),
    "graph_gib": Tolerance(rel=0.10, abs_gib=0.05),
    "device_peak_gib": Tolerance(rel=0.05, abs_gib=0.25),
    "host_rss_peak_gib": Tolerance(rel=0.20, abs_gib=0.05),
}

ENGINE_METRICS: dict[str, MetricDef] = {
    m.key: m
    for m in (
        MetricDef("memory.weights_gib", MetricKind.MEMORY_GIB,
                  "weights on the device after load ('Load weight end ... mem usage'), max over TP ranks",
                  tolerance=TOLERANCES["weights_gib"]),
        MetricDef("memory.load_peak_gib", MetricKind.MEMORY_GIB,
                  "peak before load + increase during load_weights (DEBUG lines of #18005), max over ranks",
                  tolerance=TOLERANCES["load_peak_gib"]),
        # Sized from the device's free memory (--mem-fraction-static, --gpu-memory-utilization), the captured
        # batch sizes chosen by the GPU's memory, and the device's own peak: each follows the hardware.
        MetricDef("memory.kv_cache_gib", MetricKind.MEMORY_GIB, "KV cache size, max over ranks",
                  tolerance=TOLERANCES["kv_cache_gib"], depends_on_hardware=True),
        MetricDef("memory.graph_gib", MetricKind.MEMORY_GIB, "CUDA/HIP graph capture memory, max over ranks",
                  tolerance=TOLERANCES["graph_gib"], depends_on_hardware=True),
        MetricDef("memory.device_peak_gib", MetricKind.MEMORY_GIB,
                  "peak used memory per GPU from the device sampler (NVML, nvidia-smi, amd-smi, rocm-smi), max",
                  tolerance=TOLERANCES["device_peak_gib"], depends_on_hardware=True),
        # A different quantity from a GPU's used memory, so a different metric: a CPU baseline must
        # never gate a GPU run's figure (or the reverse).
        MetricDef("memory.host_rss_peak_gib", MetricKind.MEMORY_GIB,
                  "peak RSS of the server's process tree, on machines without a GPU sampler",
                  tolerance=TOLERANCES["host_rss_peak_gib"]),
        MetricDef("spec.accept_length", MetricKind.ACCEPT_LENGTH, "speculative decoding average accept length"),
    )
}

METRICS: dict[str, MetricDef] = {**eval_metrics(), **ENGINE_METRICS}


def samples(result: CellResult) -> dict[str, MetricSample]:
    """Every gated figure a cell measured, keyed by metric key, as the gate and the baselines read it."""
    out: dict[str, MetricSample] = {}
    kernels = kernels_of(result.cell.get("kernels"))
    for name, evaluation in result.evals.items():
        for metric_name, metric in evaluation.metrics.items():
            key = f"{name}.{metric_name}"
            if key not in METRICS:  # informative figures (invalid rate, latency, ...) are not gated
                continue
            out[key] = MetricSample(metric.value, metric.n,
                                    evaluation.outcome_map() if metric_name == "accuracy" else None,
                                    evaluation.protocol, evaluation.item_values.get(metric_name), kernels,
                                    evaluation.details.get("sequential") if metric_name == "accuracy" else None)
    for key, value in result.memory.items():
        out[f"memory.{key}"] = MetricSample(value, kernels=kernels)
    if result.accept_length is not None:
        out["spec.accept_length"] = MetricSample(result.accept_length, kernels=kernels)
    return out


def eval_of(metric_key: str) -> str:
    """The family a metric belongs to: the eval name for accuracies, else 'memory' or 'spec'."""
    return metric_key.split(".", 1)[0]


__all__ = ["ENGINE_METRICS", "METRICS", "MetricDef", "MetricKind", "Tolerance", "eval_of", "samples"]
