"""The typed memory report of one server: per rank, and the max over ranks that the gate reads.

Filled by the engine's log parser (harness.engines.logs) and the device sampler
(harness.engines.devices). Every figure is GiB ("GB" in SGLang's lines is GiB: free bytes / 2**30).
Lines that are expected but absent, or that look like memory lines but match no known format,
are listed, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


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

    def _max(self, attribute: str) -> float | None:
        values = [getattr(r, attribute) for r in self.ranks.values() if getattr(r, attribute) is not None]
        return max(values) if values else None

    def gated(self) -> dict[str, float]:
        """The gate's memory metrics (keys of harness.metrics without 'memory.'), max over ranks."""
        figures = {
            "weights_gib": None if self.shared_device else self._max("weights_gib"),
            "load_peak_gib": self._max("load_peak_gib"),  # torch's allocator: the process's own
            "kv_cache_gib": self._max("kv_cache_gib"),  # tokens x bytes per token
            "graph_gib": None if self.shared_device else self._max("graph_gib"),
        }
        peak = max(self.device_peak_gib.values()) if self.device_peak_gib else None
        figures["host_rss_peak_gib" if self.sampler == "process-tree-rss" else "device_peak_gib"] = peak
        return {k: round(v, 4) for k, v in figures.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        for label, rank in self.ranks.items():
            for derived in _DERIVED:
                body["ranks"][label][derived] = getattr(rank, derived)
        body["max"] = self.gated()
        return body
