"""Server log parsers, one per engine, with every line format as a named pattern.

SGLang formats: ../shared/reference/sglang.md ("Log line prefix", "Memory lines") and the corpus of real
logs in tests/fixtures/logs/real/ (INDEX.yaml names each one's source); each variant has a pattern here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.memory import KvPool, MambaPool, MemoryReport, RankMemory, SwaPool

# SGLang's bracket: `[2026-04-20 12:00:00 DP1 TP3 EP3] `, or `[23:17:01 TP7] ` (v0.3 printed the time only).
# Rank parts appear only when that size is > 1. Anything before the bracket is someone else's prefix
# (`docker logs -t`, `docker compose` service names, kubectl, a Python logger that captured the output).
SGLANG_BRACKET = re.compile(r"\[(?P<time>(?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d)(?P<parts>(?: [A-Z_]+\d+)*)\] ")
# Some releases log `[time] INFO file.py:123: message` through their root logger.
LOGGER_FIELDS = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+:\d+: ")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_NUMBER = r"-?\d+(?:\.\d+)?"
_GRAPH_DEVICE = r"(?:cuda|CUDA|hip|HIP|cpu|CPU|npu|NPU|musa|MUSA|xpu|XPU)"


@dataclass(frozen=True)
class LinePattern:
    name: str
    regex: re.Pattern[str]


def _p(name: str, pattern: str) -> LinePattern:
    return LinePattern(name, re.compile(pattern))


SGLANG_PATTERNS = (
    _p("init_dist", rf"^Init torch distributed ends\. (?:elapsed={_NUMBER} s, )?mem usage=(?P<usage>{_NUMBER}) GB"),
    _p("load_begin", rf"^Load weight begin\. avail mem=(?P<avail>{_NUMBER}) GB"),
    # Newer: `elapsed=.. s, type=X, [quant=fp8, fmt=e4m3, ]avail mem=.., mem usage=..`;
    # older: `type=X, dtype=torch.bfloat16, avail mem=.., mem usage=..`; before v0.4.4 no `mem usage`.
    # A build past 0.5.23 (a public DeepSeek-V4 log, issue 25) prints no `type=`: `quant=fp8, fmt=e4m3, avail ..`.
    _p("load_end", rf"^Load weight end\. (?:elapsed=(?P<elapsed>{_NUMBER}) s, )?(?:type=(?P<model_class>[\w.]+), )?"
                   rf"(?:(?P<detail>[^=,]+=.*?), )?avail mem=(?P<avail>{_NUMBER}) GB"
                   rf"(?:, mem usage=(?P<usage>{_NUMBER}) GB)?"),
    _p("peak_before_load", rf"Peak GPU memory before loading weights:\s+(?P<value>{_NUMBER})\s+GiB"),
    _p("load_increase", rf"Memory increase during load_weights:\s+(?P<value>{_NUMBER})\s+GiB"),
    _p("online_quant", r"^Online (?P<quantization>\S+) quantization: quantized (?P<layers>\d+) layers of types: "
                       r"(?P<types>.*)$"),
    _p("kv_dtype", r"^Using KV cache dtype: (?P<dtype>[\w.]+)"),
    _p("kv_available", rf"^The available memory for KV cache is (?P<value>{_NUMBER}) GB"),
    _p("profiled_tokens", r"^max_total_tokens=\d+ is larger than the profiled value (?P<value>-?\d+)"),
    # `[Full |SWA ]KV Cache is allocated. [dtype: D, ]#tokens: N, K size: k GB, V size: v GB` (MHA) or
    # `... KV size: x GB` (MLA / single buffer). Hybrid SWA models log one line per pool.
    _p("kv_pool", rf"^(?:(?P<label>Full|SWA) )?KV Cache (?:is allocated|(?P<bound>VA upper bound))\. "
                  rf"(?:dtype: (?P<dtype>[\w.]+), )?#tokens: (?P<tokens>\d+), "
                  rf"(?:K size: (?P<k>{_NUMBER}) GB, V size: (?P<v>{_NUMBER}) GB|KV size: (?P<kv>{_NUMBER}) GB)"),
    # 0.5.20+ with the KV pool sized after graph capture: the pool above was logged as its `VA upper bound` (address
    # space reserved, not memory); this line gives the memory actually backed, and replaces it (draft: the draft's).
    _p("kv_post_capture", rf"^Post-capture KV sizing: (?P<draft>draft )?KV cache allocated\. "
                          rf"(?:dtype: (?P<dtype>[\w.]+), )?#tokens: (?P<tokens>\d+), KV size: (?P<kv>{_NUMBER}) GB"),
    _p("swa_pool", rf"^SWAKVPool (?:mem usage|VA upper bound): (?P<usage>{_NUMBER}) GB, swa size: (?P<swa>\d+), "
                   r"full size: (?P<full>\d+)"),
    # Hybrid linear-attention models (Qwen3-Next): `Mamba Cache is allocated. max_mamba_cache_size: N, conv_state
    # size: c GB, ssm_state size: s GB ` (no space before GB), the intermediate caches appended with speculative
    # decoding (0.5.17 and 0.5.23's mem_cache/memory_pool.py).
    _p("mamba_pool", rf"^Mamba Cache is allocated\. max_mamba_cache_size: (?P<states>\d+), "
                     rf"conv_state size: (?P<conv>{_NUMBER}) ?GB, ssm_state size: (?P<ssm>{_NUMBER}) ?GB"
                     rf"(?: intermediate_ssm_state_cache size: (?P<issm>{_NUMBER}) ?GB"
                     rf" intermediate_conv_window_cache size: (?P<iconv>{_NUMBER}) ?GB)?"),
    _p("pool_end", rf"^Memory pool end\. avail mem=(?P<avail>{_NUMBER}) GB"),
    # Older family, both orders of the two figures; `draft`, `draft extend` and `piecewise` captures too.
    _p("graph_old", rf"^Capture (?:(?P<phase>draft extend|draft|piecewise) )?{_GRAPH_DEVICE} graph end\. "
                    rf"Time elapsed: (?P<elapsed>{_NUMBER}) s\. "
                    rf"(?:mem usage=(?P<usage>{_NUMBER}) GB\. avail mem=(?P<avail>{_NUMBER}) GB\.?"
                    rf"|avail mem=(?P<avail_b>{_NUMBER}) GB\.(?: mem usage=(?P<usage_b>{_NUMBER}) GB\.?)?"
                    # 0.4.3's draft capture: the free memory after it, no usage.
                    rf"|avail mem=(?P<avail_c>{_NUMBER}) GB$)"),
    # Newer family (rank 0 only): `Capture target decode CUDA graph end. [step=k, ]elapsed=..`.
    _p("graph_new", rf"^Capture (?P<phase>(?:target|draft)[ -](?:decode|prefill|verify|extend)) "
                    rf"{_GRAPH_DEVICE} graph end\. (?:step=(?P<step>\d+), )?elapsed=(?P<elapsed>{_NUMBER}) s, "
                    rf"(?:step=(?P<step_b>\d+), )?mem usage=(?P<usage>{_NUMBER}) GB, avail mem=(?P<avail>{_NUMBER}) GB"),
    _p("graph_begin", rf"^Capture .*graph begin\b(?:.*avail mem=(?P<avail>{_NUMBER}) GB)?"),
    _p("capacity", r"^max_total_num_tokens=\d+"),
    _p("ready", r"The server is fired up and ready to roll!"),
    # 0.5.20+ numbers the batch: `Decode batch [1234], #running-req: ..`.
    _p("decode", rf"^Decode batch(?: \[[^\]]*\])?[.,].*accept len: (?P<accept>{_NUMBER})"),
)

# A line holding one of these words but matching no pattern is reported as unparsed.
MEMORY_HINTS = ("avail mem=", "mem usage=", "Cache is allocated", "GPU memory", "graph end", "KV size",
                "SWAKVPool", "available_gpu_mem")


def rank_label(parts: str) -> str:
    """`' TP3 EP3'` -> `'TP3 EP3'`; an empty prefix (tp 1) is rank `TP0`."""
    return parts.strip() or "TP0"


def split_sglang_line(raw: str) -> tuple[str, str]:
    """(rank label, message) of one log line: SGLang's bracket found wherever it starts, else the bare line."""
    line = ANSI_ESCAPE.sub("", raw.rstrip("\r\n"))
    bracket = SGLANG_BRACKET.search(line)
    if bracket is None:
        return "TP0", line.strip()  # a bare message (no bracket at all) has no rank prefix either
    message = LOGGER_FIELDS.sub("", line[bracket.end():], count=1)
    return rank_label(bracket["parts"]), message


@dataclass
class _SglangState:
    """What a line's meaning depends on, per rank: how many `Load weight end` came before (the first is the
    target's), and which pools were logged as a `VA upper bound` that a post-capture line will replace."""

    load_ends: dict[str, int] = field(default_factory=dict)
    upper_bounds: dict[str, list[int]] = field(default_factory=dict)


def parse_sglang_log(lines: Iterable[str]) -> MemoryReport:
    report = MemoryReport(engine="sglang")
    state = _SglangState()
    for raw in lines:
        label, message = split_sglang_line(raw)
        for pattern in SGLANG_PATTERNS:
            found = pattern.regex.search(message)
            if found:
                _apply_sglang(report, label, pattern.name, found, message, state)
                break
        else:
            if any(hint in message for hint in MEMORY_HINTS):
                report.unparsed.append(raw.rstrip("\r\n"))
    for rank in report.ranks.values():
        _label_swa_pools(rank)
    _note_missing(report)
    return report


def _apply_sglang(report: MemoryReport, label: str, name: str, found: re.Match[str], message: str,
                  state: _SglangState) -> None:
    if name in _REPORT_LEVEL:
        _REPORT_LEVEL[name](report, found, message)
    elif name == "graph_begin":
        if found["avail"] is not None and report.rank(label).graph_begin_avail_gib is None:
            report.rank(label).graph_begin_avail_gib = float(found["avail"])
    elif name == "load_end":
        _apply_load_end(report.rank(label), found, state.load_ends, label)
    elif name == "kv_pool":
        rank = report.rank(label)
        if found["bound"]:
            state.upper_bounds.setdefault(label, []).append(len(rank.kv_pools))
        _add_kv_pool(rank, found)
    elif name == "kv_post_capture":
        _apply_post_capture(report.rank(label), found, state.upper_bounds.setdefault(label, []))
    elif name in ("graph_old", "graph_new"):
        _apply_graph(report.rank(label), name, found)
    else:
        _RANK_LEVEL[name](report.rank(label), found)


def _set_ready(report: MemoryReport, found: re.Match[str], message: str) -> None:
    report.ready = True


def _set_accept_length(report: MemoryReport, found: re.Match[str], message: str) -> None:
    report.accept_length = float(found["accept"])


def _set_capacity(report: MemoryReport, found: re.Match[str], message: str) -> None:
    report.capacity = _key_values(message)


_REPORT_LEVEL = {"ready": _set_ready, "decode": _set_accept_length, "capacity": _set_capacity}


def _apply_load_end(rank: RankMemory, found: re.Match[str], load_ends: dict[str, int], label: str) -> None:
    # The first pair is the target model; a second one is the draft / MTP model.
    count = load_ends[label] = load_ends.get(label, 0) + 1
    usage = None if found["usage"] is None else float(found["usage"])
    if count == 1:
        rank.weights_gib = usage
        rank.load_end_avail_gib = float(found["avail"])
        rank.load_elapsed_s = None if found["elapsed"] is None else float(found["elapsed"])
        rank.model_class = found["model_class"]
        rank.load_detail = found["detail"]
    else:
        if usage is not None:
            rank.draft_weights_gib = (rank.draft_weights_gib or 0.0) + usage
        rank.draft_model_class = found["model_class"]


def _apply_graph(rank: RankMemory, name: str, found: re.Match[str]) -> None:
    groups = found.groupdict()
    usage = next((groups[key] for key in ("usage", "usage_b") if groups.get(key) is not None), None)
    avail = next(groups[key] for key in ("avail", "avail_b", "avail_c") if groups.get(key) is not None)
    rank.graph_avail_gib = float(avail)
    if usage is None:
        return
    phase = found["phase"] or "graph"
    step = found.groupdict().get("step") or found.groupdict().get("step_b")
    key = f"{phase} step={step}" if step is not None else phase
    rank.graph_phases[key] = round(rank.graph_phases.get(key, 0.0) + float(usage), 4)
    rank.graph_gib = round(sum(rank.graph_phases.values()), 4)


def _set_init_dist(rank: RankMemory, found: re.Match[str]) -> None:
    if rank.init_dist_gib is None:  # a second one is the draft / MTP worker's (0.00 on the rig's NEXTN logs)
        rank.init_dist_gib = float(found["usage"])


def _set_load_begin(rank: RankMemory, found: re.Match[str]) -> None:
    if rank.load_begin_avail_gib is None:  # a second begin is the draft model's
        rank.load_begin_avail_gib = float(found["avail"])


def _set_peak_before_load(rank: RankMemory, found: re.Match[str]) -> None:
    if rank.peak_before_load_gib is None:  # SGLang's own test reads the first match
        rank.peak_before_load_gib = float(found["value"])


def _set_load_increase(rank: RankMemory, found: re.Match[str]) -> None:
    if rank.load_increase_gib is None:
        rank.load_increase_gib = float(found["value"])


def _set_online_quant(rank: RankMemory, found: re.Match[str]) -> None:
    rank.online_quant = {"quantization": found["quantization"], "layers": int(found["layers"]),
                         "types": found["types"].strip()}


def _set_kv_dtype(rank: RankMemory, found: re.Match[str]) -> None:
    rank.kv_dtype = rank.kv_dtype or found["dtype"]


def _set_kv_available(rank: RankMemory, found: re.Match[str]) -> None:
    rank.kv_available_gib = float(found["value"])


def _set_profiled_tokens(rank: RankMemory, found: re.Match[str]) -> None:
    rank.profiled_max_tokens = int(found["value"])


def _add_kv_pool(rank: RankMemory, found: re.Match[str]) -> None:
    rank.kv_pools.append(KvPool(
        tokens=int(found["tokens"]), label=found["label"], dtype=found["dtype"],
        k_gib=_float_or_none(found["k"]), v_gib=_float_or_none(found["v"]), kv_gib=_float_or_none(found["kv"]),
    ))
    rank.kv_dtype = rank.kv_dtype or found["dtype"]


def _apply_post_capture(rank: RankMemory, found: re.Match[str], upper_bounds: list[int]) -> None:
    """The memory a post-capture pool backs, in place of the first pool still logged as its upper bound."""
    backed_gib = float(found["kv"])
    if upper_bounds:
        index = upper_bounds.pop(0)
        bound = rank.kv_pools[index]
        rank.kv_pools[index] = KvPool(tokens=int(found["tokens"]), label=bound.label,
                                      dtype=found["dtype"] or bound.dtype, kv_gib=backed_gib)
    else:
        rank.kv_pools.append(KvPool(tokens=int(found["tokens"]), dtype=found["dtype"], kv_gib=backed_gib))
    rank.kv_dtype = rank.kv_dtype or found["dtype"]


def _set_swa_pool(rank: RankMemory, found: re.Match[str]) -> None:
    rank.swa_pool = SwaPool(float(found["usage"]), int(found["swa"]), int(found["full"]))


def _set_mamba_pool(rank: RankMemory, found: re.Match[str]) -> None:
    rank.mamba_pool = MambaPool(int(found["states"]), float(found["conv"]), float(found["ssm"]),
                                _float_or_none(found["issm"]), _float_or_none(found["iconv"]))


def _set_pool_end(rank: RankMemory, found: re.Match[str]) -> None:
    rank.pool_end_avail_gib = float(found["avail"])


_RANK_LEVEL = {
    "init_dist": _set_init_dist, "load_begin": _set_load_begin, "peak_before_load": _set_peak_before_load,
    "load_increase": _set_load_increase, "online_quant": _set_online_quant, "kv_dtype": _set_kv_dtype,
    "kv_available": _set_kv_available, "profiled_tokens": _set_profiled_tokens,
    "swa_pool": _set_swa_pool, "mamba_pool": _set_mamba_pool, "pool_end": _set_pool_end,
}


def _float_or_none(text: str | None) -> float | None:
    return None if text is None else float(text)


def _label_swa_pools(rank: RankMemory) -> None:
    """Name unlabelled pools "Full" / "SWA" where SWAKVPool's two sizes differ and tell them apart.

    Releases before the labelled lines print two bare `KV Cache is allocated` lines; their order changed
    between releases, so when both pools have the same size the lines stay unnamed rather than guessed.
    """
    swa = rank.swa_pool
    if swa is None or swa.swa_tokens == swa.full_tokens:
        return
    names = {swa.swa_tokens: "SWA", swa.full_tokens: "Full"}
    for pool in rank.kv_pools:
        if pool.label is None:
            pool.label = names.get(pool.tokens) if pool.tokens is not None else None


def _key_values(message: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for part in message.split(", "):
        if "=" not in part:
            continue
        key, value = part.split("=", 1)
        value = value.strip().removesuffix(" GB")
        try:
            values[key.strip()] = int(value)
        except ValueError:
            try:
                values[key.strip()] = float(value)
            except ValueError:
                values[key.strip()] = value
    return values


def _note_missing(report: MemoryReport) -> None:
    if not report.ranks:
        report.missing.append("no per-rank memory line at all")
        return
    for label, rank in sorted(report.ranks.items()):
        report.missing.extend(f"{label}: {gap}" for gap in _rank_gaps(rank))


def _rank_gaps(rank: RankMemory) -> list[str]:
    gaps = []
    if rank.load_end_avail_gib is None:
        gaps.append("no 'Load weight end' line")
    elif rank.weights_gib is None:
        gaps.append("'Load weight end' has no 'mem usage' (releases before v0.4.4)")
    if not rank.kv_pools:
        gaps.append("no 'KV Cache is allocated' line")
    elif (rank.swa_pool is not None and rank.kv_cache_gib is not None
          and abs(rank.kv_cache_gib - rank.swa_pool.mem_usage_gib) > 0.015):
        gaps.append(f"the KV pool lines sum to {rank.kv_cache_gib:.2f} GB but SWAKVPool reports "
                    f"{rank.swa_pool.mem_usage_gib:.2f} GB (a pool line is absent)")
    if (rank.peak_before_load_gib is None) != (rank.load_increase_gib is None):
        gaps.append("only one of the two DEBUG peak-memory lines")
    return gaps


# --- vLLM ---------------------------------------------------------------------------------------------

# `(VllmWorker rank=1 pid=42) INFO 04-20 12:00:00 [gpu_model_runner.py:1234] Model loading took ...`
VLLM_RANK = re.compile(r"\((?:VllmWorker|Worker)[^)]*?(?:rank=|_TP)(?P<rank>\d+)")
VLLM_PATTERNS = (
    _p("weights", rf"(?:Model loading took|Loading model weights took) (?P<value>{_NUMBER}) Gi?B"),
    _p("kv", rf"Available KV cache memory: (?P<value>{_NUMBER}) GiB"),
    # The CPU worker prints neither line above: the KV cache it was given (VLLM_CPU_KVCACHE_SPACE), in tokens.
    _p("kv", rf"Explicitly set \((?P<value>{_NUMBER})/{_NUMBER}\) GiB for KV cache"),
    _p("kv_tokens", r"CPU KV cache size: (?P<value>\d[\d,]*) tokens"),
    _p("graph", rf"Graph capturing finished in {_NUMBER} secs?, took (?P<value>{_NUMBER}) GiB"),
    _p("ready", r"Application startup complete\."),
)


def parse_vllm_log(lines: Iterable[str]) -> MemoryReport:
    report = MemoryReport(engine="vllm")
    for raw in lines:
        line = raw.rstrip("\n")
        rank_match = VLLM_RANK.search(line)
        label = f"TP{rank_match['rank']}" if rank_match else "TP0"
        for pattern in VLLM_PATTERNS:
            found = pattern.regex.search(line)
            if not found:
                continue
            if pattern.name == "ready":
                report.ready = True
            elif pattern.name == "kv_tokens":
                _vllm_kv_tokens(report.rank(label), int(found["value"].replace(",", "")))
            else:
                _apply_vllm(report.rank(label), pattern.name, float(found["value"]))
            break
    _note_missing_vllm(report)
    return report


def _vllm_kv_tokens(rank: RankMemory, tokens: int) -> None:
    """The CPU worker's token count, after the budget line it belongs to."""
    budget = rank.kv_pools[0].kv_gib if rank.kv_pools else None
    rank.kv_pools = [KvPool(tokens=tokens, kv_gib=budget)]


def _apply_vllm(rank: RankMemory, name: str, value: float) -> None:
    if name == "kv":
        tokens = rank.kv_pools[0].tokens if rank.kv_pools else None
        rank.kv_pools = [KvPool(tokens=tokens, kv_gib=value)]  # vLLM states the budget; the CPU worker its tokens
    else:
        setattr(rank, {"weights": "weights_gib", "graph": "graph_gib"}[name], value)


def _note_missing_vllm(report: MemoryReport) -> None:
    if not report.ranks:
        report.missing.append("no memory line at all")
    for label, rank in sorted(report.ranks.items()):
        if rank.weights_gib is None:
            report.missing.append(f"{label}: no 'Model loading took' line")

