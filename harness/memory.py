"""The typed memory report of one server: per rank, and the max over ranks that the gate reads.

Filled by the engine's log parser (harness.engines.logs) and the device sampler
(harness.engines.devices). Every figure is GiB ("GB" in SGLang's lines is GiB: free bytes / 2**30).
Lines that are expected but absent, or that look like memory lines but match no known format,
are listed, never guessed.

The figures the gate reads are defined once, in `GATED`: each names its metric (`memory.<name>`), how it is read
from a report, its tolerance and whether it follows the device. harness.metrics turns them into metric
definitions, `MemoryReport.gated()` reads them: a figure is gated exactly when it is defined here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.metric_kinds import Tolerance


@dataclass
class KvPool:
    """One `KV Cache is allocated` line: MHA pools give K and V, MLA / single-buffer pools one KV size."""

    tokens: int | None  # None where the engine does not say (vLLM)
    label: str | None = None  # "Full" / "SWA" as the line names it (or as SWAKVPool's sizes tell), else None
    dtype: str | None = None
    k_gib: float | None = None
    v_gib: float | None = None
    kv_gib: float | None = None  # the single-buffer figure; None when K and V are given

    @property
    def total_gib(self) -> float:
        return self.kv_gib if self.kv_gib is not None else (self.k_gib or 0.0) + (self.v_gib or 0.0)


@dataclass
class SwaPool:
    """`SWAKVPool mem usage: X GB, swa size: N, full size: M`: the hybrid pool's own total."""

    mem_usage_gib: float
    swa_tokens: int
    full_tokens: int


@dataclass
class MambaPool:
    """`Mamba Cache is allocated. max_mamba_cache_size: N, conv_state size: c GB, ssm_state size: s GB`: the
    state pool of a hybrid linear-attention model (Qwen3-Next's GDN layers), beside its KV pool; speculative
    decoding adds the intermediate SSM and conv-window caches to the same line."""

    states: int
    conv_gib: float
    ssm_gib: float
    intermediate_ssm_gib: float | None = None
    intermediate_conv_window_gib: float | None = None

    @property
    def total_gib(self) -> float:
        parts = (self.conv_gib, self.ssm_gib, self.intermediate_ssm_gib, self.intermediate_conv_window_gib)
        return round(sum(part for part in parts if part is not None), 4)


@dataclass
class RankMemory:
    rank: str  # the log prefix, e.g. "TP3 EP3"; "TP0" when the server prints none (tp 1)
    init_dist_gib: float | None = None  # "Init torch distributed ends. mem usage" (NCCL, custom all-reduce)
    load_begin_avail_gib: float | None = None
    weights_gib: float | None = None  # target model's "mem usage" at "Load weight end"; absent before v0.4.4
    load_end_avail_gib: float | None = None
    load_elapsed_s: float | None = None
    model_class: str | None = None
    load_detail: str | None = None  # "quant=fp8, fmt=e4m3" or "dtype=torch.bfloat16"
    draft_weights_gib: float | None = None  # the draft / MTP model's pair; may be negative
    draft_model_class: str | None = None
    peak_before_load_gib: float | None = None  # DEBUG, #18005
    load_increase_gib: float | None = None  # DEBUG, #18005; may be negative
    kv_available_gib: float | None = None  # "The available memory for KV cache is X GB" (some releases)
    profiled_max_tokens: int | None = None  # "max_total_tokens=A is larger than the profiled value B"
    kv_pools: list[KvPool] = field(default_factory=list)  # in log order: target, draft, full / SWA
    swa_pool: SwaPool | None = None
    mamba_pool: MambaPool | None = None  # not in kv_cache_gib: states per request, not tokens
    kv_dtype: str | None = None
    pool_end_avail_gib: float | None = None  # the last "Memory pool end" (after every pool)
    graph_begin_avail_gib: float | None = None  # free memory before the first capture
    graph_gib: float | None = None  # summed over capture phases
    graph_phases: dict[str, float] = field(default_factory=dict)
    graph_avail_gib: float | None = None
    online_quant: dict[str, Any] | None = None

    @property
    def load_peak_gib(self) -> float | None:
        """The online-quantization test's bound: peak before load + increase during load_weights."""
        if self.peak_before_load_gib is None or self.load_increase_gib is None:
            return None
        return self.peak_before_load_gib + self.load_increase_gib

    @property
    def kv_tokens(self) -> int | None:
        """The first pool's size: the target model's token capacity."""
        return self.kv_pools[0].tokens if self.kv_pools else None

    @property
    def kv_k_gib(self) -> float | None:
        return _sum_of(pool.k_gib for pool in self.kv_pools)

    @property
    def kv_v_gib(self) -> float | None:
        return _sum_of(pool.v_gib for pool in self.kv_pools)

    @property
    def kv_cache_gib(self) -> float | None:
        """Every pool of the rank (target, draft, full and SWA): K + V, or the single KV buffer."""
        return round(sum(pool.total_gib for pool in self.kv_pools), 4) if self.kv_pools else None


def _sum_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present), 4) if present else None


_DERIVED = ("load_peak_gib", "kv_tokens", "kv_k_gib", "kv_v_gib", "kv_cache_gib")


@dataclass
class MemoryReport:
    engine: str
    ranks: dict[str, RankMemory] = field(default_factory=dict)
    capacity: dict[str, Any] = field(default_factory=dict)  # max_total_num_tokens, context_len, ...
    ready: bool = False
    accept_length: float | None = None  # last "accept len" of a decode line, a cross-check only
    missing: list[str] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)
    device_peak_gib: dict[str, float] = field(default_factory=dict)  # from the sampler, per device
    sampler: str = ""  # the sampler's source: "nvml", "rocm-smi", ..., or "process-tree-rss"
    # Other servers shared the device (--share-gpus): figures SGLang takes as a drop in the device's free memory
    # (weights' and graphs' `mem usage`) count their allocations too (on the rig: -7.65 GiB of weights).
    shared_device: bool = False

    def rank(self, label: str) -> RankMemory:
        if label not in self.ranks:
            self.ranks[label] = RankMemory(rank=label)
        return self.ranks[label]

    def max_over_ranks(self, attribute: str) -> float | None:
        values = [getattr(r, attribute) for r in self.ranks.values() if getattr(r, attribute) is not None]
        return max(values) if values else None

    def gated(self) -> dict[str, float]:
        """The gate's memory figures (`GATED`; metric keys without 'memory.'), max over ranks."""
        figures = {figure.name: figure.read(self) for figure in GATED}
        return {k: round(v, 4) for k, v in figures.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        for label, rank in self.ranks.items():
            for derived in _DERIVED:
                body["ranks"][label][derived] = getattr(rank, derived)
        body["max"] = self.gated()
        return body


# --- the gated figures ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GatedFigure:
    """One memory figure the gate reads: the metric `memory.<name>` (harness.metrics) and the key of results'
    `memory` and of baselines."""

    name: str
    description: str
    read: Callable[[MemoryReport], float | None]
    tolerance: Tolerance  # the gate's default (a suite may set its own, gate.memory)
    # The figure follows the device it ran on (a pool sized as a fraction of the GPU's memory, the device's
    # peak): compared only with a baseline of the same GPU model and memory size and sizing flags.
    depends_on_hardware: bool = False


def rank_max(attribute: str, *, own_allocations_only: bool = False) -> Callable[[MemoryReport], float | None]:
    """The max over ranks of a RankMemory attribute. `own_allocations_only`: the figure is a drop in the device's
    free memory, which other servers sharing the device (--share-gpus) move too: none then."""
    def read(report: MemoryReport) -> float | None:
        return None if own_allocations_only and report.shared_device else report.max_over_ranks(attribute)
    return read


def sampled_peak(*, host_rss: bool) -> Callable[[MemoryReport], float | None]:
    """The device sampler's peak, max over devices: a GPU's used memory, or on a machine without a GPU sampler the
    server's process-tree RSS (a different quantity, so a different figure: one never gates the other)."""
    def read(report: MemoryReport) -> float | None:
        if not report.device_peak_gib or (report.sampler == "process-tree-rss") != host_rss:
            return None
        return max(report.device_peak_gib.values())
    return read


# Tolerances, each from what moves the figure between runs of the same build:
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
# KV pool, graphs and device peak are sized from the device's free memory (--mem-fraction-static,
# --gpu-memory-utilization), the captured batch sizes chosen by the GPU's memory, and the device's own peak: each
# follows the hardware.
GATED: tuple[GatedFigure, ...] = (
    GatedFigure("weights_gib", "weights on the device after load ('Load weight end ... mem usage'), max over TP ranks",
                rank_max("weights_gib", own_allocations_only=True), Tolerance(rel=0.03, abs_gib=0.02)),
    GatedFigure("load_peak_gib", "peak before load + increase during load_weights (DEBUG lines of #18005), max over "
                "ranks", rank_max("load_peak_gib"), Tolerance(rel=0.05, abs_gib=0.05)),  # torch's allocator: its own
    GatedFigure("kv_cache_gib", "KV cache size, max over ranks", rank_max("kv_cache_gib"),
                Tolerance(rel=0.05, abs_gib=0.05), depends_on_hardware=True),
    GatedFigure("graph_gib", "CUDA/HIP graph capture memory, max over ranks",
                rank_max("graph_gib", own_allocations_only=True), Tolerance(rel=0.10, abs_gib=0.05),
                depends_on_hardware=True),
    GatedFigure("device_peak_gib", "peak used memory per GPU from the device sampler (NVML, nvidia-smi, amd-smi, "
                "rocm-smi), max", sampled_peak(host_rss=False), Tolerance(rel=0.05, abs_gib=0.25),
                depends_on_hardware=True),
    GatedFigure("host_rss_peak_gib", "peak RSS of the server's process tree, on machines without a GPU sampler",
                sampled_peak(host_rss=True), Tolerance(rel=0.20, abs_gib=0.05)),
)
