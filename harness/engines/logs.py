"""Server log parsers, one per engine, with every line format as a named pattern.

SGLang formats: ../shared/reference/sglang.md ("Log line prefix", "Memory lines"). Each variant
listed there has a pattern here and a fixture in tests/fixtures/logs/.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from harness.memory import MemoryReport

# `[2026-04-20 12:00:00 DP1 TP3 EP3] message`: the parts appear only when that size is > 1.
SGLANG_PREFIX = re.compile(r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?P<parts>(?: [A-Z_]+\d+)*)\] (?P<message>.*)$")
_NUMBER = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class LinePattern:
    name: str
    regex: re.Pattern[str]


def _p(name: str, pattern: str) -> LinePattern:
    return LinePattern(name, re.compile(pattern))


SGLANG_PATTERNS = (
    _p("load_begin", rf"^Load weight begin\. avail mem=(?P<avail>{_NUMBER}) GB"),
    # Newer: `elapsed=.. s, type=X, [quant=fp8, fmt=e4m3, ]avail mem=.., mem usage=..`;
    # older: `type=X, dtype=torch.bfloat16, avail mem=.., mem usage=..`.
    _p("load_end", rf"^Load weight end\. (?:elapsed=(?P<elapsed>{_NUMBER}) s, )?type=(?P<model_class>[\w.]+), "
                   rf"(?:(?P<detail>.*?), )?avail mem=(?P<avail>{_NUMBER}) GB, mem usage=(?P<usage>{_NUMBER}) GB"),
    _p("peak_before_load", rf"Peak GPU memory before loading weights:\s+(?P<value>{_NUMBER})\s+GiB"),
    _p("load_increase", rf"Memory increase during load_weights:\s+(?P<value>{_NUMBER})\s+GiB"),
    _p("online_quant", r"^Online (?P<quantization>\S+) quantization: quantized (?P<layers>\d+) layers of types: "
                       r"(?P<types>.*)$"),
    _p("kv_split", rf"^KV Cache is allocated\. (?:dtype: (?P<dtype>[\w.]+), )?#tokens: (?P<tokens>\d+), "
                   rf"K size: (?P<k>{_NUMBER}) GB, V size: (?P<v>{_NUMBER}) GB"),
    _p("kv_single", rf"^KV Cache is allocated\. (?:dtype: (?P<dtype>[\w.]+), )?#tokens: (?P<tokens>\d+), "
                    rf"KV size: (?P<kv>{_NUMBER}) GB"),
    _p("pool_end", rf"^Memory pool end\. avail mem=(?P<avail>{_NUMBER}) GB"),
    # Older family, both orders of the two figures.
    _p("graph_old", rf"^Capture (?:cuda|CUDA|hip|HIP) graph end\. Time elapsed: (?P<elapsed>{_NUMBER}) s\. "
                    rf"(?:mem usage=(?P<usage>{_NUMBER}) GB\. avail mem=(?P<avail>{_NUMBER}) GB\.?"
                    rf"|avail mem=(?P<avail_b>{_NUMBER}) GB\. mem usage=(?P<usage_b>{_NUMBER}) GB\.?)"),
    # Newer family (rank 0 only): `Capture target decode CUDA graph end. [step=k, ]elapsed=..`.
    _p("graph_new", rf"^Capture (?P<phase>(?:target|draft)[ -](?:decode|prefill|verify|extend)) "
                    rf"(?:cuda|CUDA|hip|HIP) graph end\. (?:step=(?P<step>\d+), )?elapsed=(?P<elapsed>{_NUMBER}) s, "
                    rf"(?:step=(?P<step_b>\d+), )?mem usage=(?P<usage>{_NUMBER}) GB, avail mem=(?P<avail>{_NUMBER}) GB"),
    # Recognised so it is not reported as unparsed; the figures that matter are on the "end" line.
    _p("graph_begin", r"^Capture .*graph begin"),
    _p("capacity", r"^max_total_num_tokens=\d+"),
    _p("ready", r"The server is fired up and ready to roll!"),
    _p("decode", rf"^Decode batch\..*accept len: (?P<accept>{_NUMBER})"),
)

# A line holding one of these words but matching no pattern is reported as unparsed.
MEMORY_HINTS = ("avail mem=", "mem usage=", "KV Cache is allocated", "GPU memory", "graph end")


def rank_label(parts: str) -> str:
    """`' TP3 EP3'` -> `'TP3 EP3'`; an empty prefix (tp 1) is rank `TP0`."""
    return parts.strip() or "TP0"


def parse_sglang_log(lines: Iterable[str]) -> MemoryReport:
    report = MemoryReport(engine="sglang")
    load_ends: dict[str, int] = {}
    for raw in lines:
        match = SGLANG_PREFIX.match(raw.rstrip("\n"))
        if not match:
            continue  # tracebacks and third-party lines carry no memory figures
        label, message = rank_label(match["parts"]), match["message"]
        for pattern in SGLANG_PATTERNS:
            found = pattern.regex.search(message)
            if found:
                _apply_sglang(report, label, pattern.name, found, message, load_ends)
                break
        else:
            if any(hint in message for hint in MEMORY_HINTS):
                report.unparsed.append(raw.rstrip("\n"))
    _note_missing(report)
    return report


def _apply_sglang(report: MemoryReport, label: str, name: str, found: re.Match[str], message: str,
                  load_ends: dict[str, int]) -> None:
    if name == "graph_begin":
        return
    if name == "ready":
        report.ready = True
        return
    if name == "decode":
        report.accept_length = float(found["accept"])
        return
    if name == "capacity":
        report.capacity = _key_values(message)
        return
    rank = report.rank(label)
    if name == "load_begin":
        if load_ends.get(label, 0) == 0:
            rank.load_begin_avail_gib = float(found["avail"])
    elif name == "load_end":
        # The first pair is the target model; a second one is the draft / MTP model.
        count = load_ends[label] = load_ends.get(label, 0) + 1
        if count == 1:
            rank.weights_gib = float(found["usage"])
            rank.load_end_avail_gib = float(found["avail"])
            rank.load_elapsed_s = None if found["elapsed"] is None else float(found["elapsed"])
            rank.model_class = found["model_class"]
            rank.load_detail = found["detail"]
        else:
            rank.draft_weights_gib = (rank.draft_weights_gib or 0.0) + float(found["usage"])
            rank.draft_model_class = found["model_class"]
    elif name == "peak_before_load":
        if rank.peak_before_load_gib is None:  # SGLang's own test reads the first match
            rank.peak_before_load_gib = float(found["value"])
    elif name == "load_increase":
        if rank.load_increase_gib is None:
            rank.load_increase_gib = float(found["value"])
    elif name == "online_quant":
        rank.online_quant = {"quantization": found["quantization"], "layers": int(found["layers"]),
                             "types": found["types"].strip()}
    elif name in ("kv_split", "kv_single"):
        size = float(found["kv"]) if name == "kv_single" else float(found["k"]) + float(found["v"])
        rank.kv_cache_gib = (rank.kv_cache_gib or 0.0) + size  # a draft model allocates its own pool
        rank.kv_tokens = int(found["tokens"]) if rank.kv_tokens is None else rank.kv_tokens
        rank.kv_dtype = found["dtype"] or rank.kv_dtype
    elif name == "pool_end":
        rank.pool_end_avail_gib = float(found["avail"])
    elif name in ("graph_old", "graph_new"):
        usage = found["usage"] if found["usage"] is not None else found["usage_b"]
        avail = found["avail"] if found["avail"] is not None else found["avail_b"]
        phase = found["phase"] if name == "graph_new" else "graph"
        step = found.groupdict().get("step") or found.groupdict().get("step_b")
        key = f"{phase} step={step}" if step is not None else phase
        rank.graph_phases[key] = rank.graph_phases.get(key, 0.0) + float(usage)
        rank.graph_gib = round(sum(rank.graph_phases.values()), 4)
        rank.graph_avail_gib = float(avail)


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
        if rank.weights_gib is None:
            report.missing.append(f"{label}: no 'Load weight end' line")
        if rank.kv_cache_gib is None:
            report.missing.append(f"{label}: no 'KV Cache is allocated' line")
        if (rank.peak_before_load_gib is None) != (rank.load_increase_gib is None):
            report.missing.append(f"{label}: only one of the two DEBUG peak-memory lines")


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
                report.rank(label).kv_tokens = int(found["value"].replace(",", ""))
            else:
                attribute = {"weights": "weights_gib", "kv": "kv_cache_gib", "graph": "graph_gib"}[pattern.name]
                setattr(report.rank(label), attribute, float(found["value"]))
            break
    _note_missing_vllm(report)
    return report


def _note_missing_vllm(report: MemoryReport) -> None:
    if not report.ranks:
        report.missing.append("no memory line at all")
    for label, rank in sorted(report.ranks.items()):
        if rank.weights_gib is None:
            report.missing.append(f"{label}: no 'Model loading took' line")


def parse_no_log(lines: Iterable[str]) -> MemoryReport:
    """Engines that print no memory lines (transformers serve): the device sampler is the only source."""
    return MemoryReport(engine="none")


PARSERS = {"sglang": parse_sglang_log, "vllm": parse_vllm_log, "transformers": parse_no_log}
