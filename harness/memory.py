"""The typed memory report of one server: per rank, and the max over ranks that the gate reads.

Filled by the engine's log parser (harness.engines.logs) and the device sampler
(harness.engines.devices). Every figure is GiB ("GB" in SGLang's lines is GiB: free bytes / 2**30).
Lines that are expected but absent, or that look like memory lines but match no known format,
are listed, never guessed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RankMemory:
    rank: str  # the log prefix, e.g. "TP3 EP3"; "TP0" when the server prints none (tp 1)
    load_begin_avail_gib: float | None = None
    weights_gib: float | None = None  # target model's "mem usage" at "Load weight end"
    load_end_avail_gib: float | None = None
    load_elapsed_s: float | None = None
    model_class: str | None = None
    load_detail: str | None = None  # "quant=fp8, fmt=e4m3" or "dtype=torch.bfloat16"
    draft_weights_gib: float | None = None  # the draft / MTP model's pair; may be negative
    draft_model_class: str | None = None
    peak_before_load_gib: float | None = None  # DEBUG, #18005
    load_increase_gib: float | None = None  # DEBUG, #18005; may be negative
    kv_tokens: int | None = None
    kv_cache_gib: float | None = None  # K + V, or the single KV buffer of MLA pools
    kv_dtype: str | None = None
    pool_end_avail_gib: float | None = None
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
            "weights_gib": self._max("weights_gib"),
            "load_peak_gib": self._max("load_peak_gib"),
            "kv_cache_gib": self._max("kv_cache_gib"),
            "graph_gib": self._max("graph_gib"),
        }
        peak = max(self.device_peak_gib.values()) if self.device_peak_gib else None
        figures["host_rss_peak_gib" if self.sampler == "process-tree-rss" else "device_peak_gib"] = peak
        return {k: round(v, 4) for k, v in figures.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        for label, rank in self.ranks.items():
            body["ranks"][label]["load_peak_gib"] = rank.load_peak_gib
        body["max"] = self.gated()
        return body
