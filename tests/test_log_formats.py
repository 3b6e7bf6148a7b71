"""Every log format string SGLang's releases print that carries a figure or a failure harness reads, read.

tests/golden/sglang_log_formats.json is extracted from SGLang's own source (`python tools/sglang_log_formats.py`,
the releases it names): each template rendered with sample values. The parser (harness.engines.logs) must read
each `parse:` line with the pattern its marker names, the figure it holds taken; the classifier
(harness.engines.failures) must give each `fail:` line its cause. A refreshed extract with a form neither
reads fails here until the parser learns it or NO_FIGURE says why it carries nothing harness reads.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from harness.engines.failures import classify
from harness.engines.logs import SGLANG_PATTERNS, parse_sglang_log, split_sglang_line

EXTRACT = Path(__file__).parent / "golden" / "sglang_log_formats.json"
BRACKET = "[2026-12-05 10:00:00 TP0] "

# Templates that hold a marker but no figure harness reads, each with the reason.
NO_FIGURE = {
    "Capture cuda graph end. Time elapsed: {time.time() - tic:.2f} s":
        "0.4.0 logs no memory figure for the capture",
    "Capture Frozen-KV MTP draft cuda graph end.": "no figure: the Frozen-KV MTP draft logs the end only",
    "Load weight end. Committed real weights after CUDA graph capture in {time.perf_counter() - commit_started_at:.2f}"
    " s (capture overlap window {commit_started_at - self._prefetch_started_at:.2f} s, startup overlap total "
    "{time.perf_counter() - self._created_at:.2f} s)":
        "0.5.23's overlapped startup load: times only (the weights' memory is not logged on that path)",
}
# The patterns a `parse:` kind accepts (graph lines come in two families).
ACCEPTS = {"graph": {"graph_old", "graph_new"}}


def _extract() -> dict:
    return json.loads(EXTRACT.read_text(encoding="utf-8"))


def _formats() -> list[dict]:
    return _extract()["formats"]


def matched_pattern(line: str) -> str | None:
    """The name of the first pattern the parser applies to a line, as parse_sglang_log picks it."""
    _, message = split_sglang_line(line)
    return next((p.name for p in SGLANG_PATTERNS if p.regex.search(message)), None)


def _numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"-?\d+\.\d+", text)}


def _figures(report) -> set[float]:
    """Every float figure the parser took from a line, wherever in the report it went."""
    found: set[float] = set()
    for rank in report.ranks.values():
        found |= {v for v in rank.__dict__.values() if isinstance(v, float)}
        found |= set(rank.graph_phases.values())
        for pool in rank.kv_pools:
            found |= {v for v in (pool.k_gib, pool.v_gib, pool.kv_gib) if v is not None}
        for pool in (rank.swa_pool, rank.mamba_pool):
            if pool is not None:
                found |= {v for v in pool.__dict__.values() if isinstance(v, float)}
    if report.accept_length is not None:
        found.add(report.accept_length)
    return found


def unread(entry: dict) -> str | None:
    """Why harness cannot read an extracted form, or None when it reads it."""
    if entry["template"] in NO_FIGURE:
        return None
    kind, expected = entry["reads"].split(":", 1)
    line = BRACKET + entry["sample"]
    if kind == "fail":
        failure = classify([line], exited=True)
        cause = failure.cause if failure else None
        ok = cause is not None and (cause == expected or (expected == "oom" and cause.startswith("oom_")))
        return None if ok else f"classified {cause}, expected {expected}"
    name = matched_pattern(line)
    if name not in ACCEPTS.get(expected, {expected}):
        return f"matched pattern {name}, expected {expected}"
    report = parse_sglang_log([line])
    if report.unparsed:
        return "listed as unparsed"
    wanted = _numbers(entry["sample"])
    if wanted and not wanted & _figures(report) and expected not in ("capacity", "ready"):
        return f"no figure taken (the line holds {sorted(wanted)})"
    return None


def test_the_extract_covers_the_releases_it_names():
    extract = _extract()
    releases = extract["releases"]
    assert len(releases) >= 10 and any(r.startswith("0.4.") for r in releases)
    named = {where.split()[0] for entry in extract["formats"] for where in entry["releases"]}
    assert named == set(releases)  # every release contributed forms


@pytest.mark.parametrize("entry", _formats(), ids=lambda e: f"{e['reads']}:{e['sample'][:60]}")
def test_every_extracted_form_is_read(entry):
    assert unread(entry) is None, f"{entry['template']!r} ({entry['releases'][0]}): {unread(entry)}"


def test_every_reason_for_no_figure_names_a_form_still_extracted():
    templates = {entry["template"] for entry in _formats()}
    assert set(NO_FIGURE) <= templates


def test_an_unreadable_form_fails_the_check():
    """The check can fail: a load-end line in a form no pattern knows, and a failure line classified wrongly."""
    assert unread({"template": "t", "reads": "parse:load_end",
                   "sample": "Load weight end. weights=12.34 GiB"}) is not None
    assert unread({"template": "t", "reads": "parse:kv_pool",
                   "sample": "KV Cache is allocated. #tokens: 100, KV size: lots"}) is not None
    assert unread({"template": "t", "reads": "fail:oom", "sample": "Scheduler hit an exception: boom"}) is not None


def test_the_tool_renders_templates_from_source(tmp_path, monkeypatch):
    """The extraction on a tiny synthetic module: f-strings, `%` logger arguments, `+=` built messages, and a
    conditional's two branches."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "sglang_log_formats", Path(__file__).parent.parent / "tools" / "sglang_log_formats.py")
    tool = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sglang_log_formats", tool)  # its dataclasses look their module up
    spec.loader.exec_module(tool)
    source = '''
def f(self, a, b):
    logger.info(f"Load weight end. type={type(self.model).__name__}, avail mem={a:.2f} GB, mem usage={b:.2f} GB.")
    logger.info("Memory pool end. avail mem=%.2f GB", a)
    msg = f"Decode batch. #running-req: {num_running_reqs}, "
    if spec:
        msg += f"accept len: {x:.2f}, "
    logger.info(msg)
    name = "Full KV Cache" if f else "KV Cache"
    logger.info(f"{name} {'VA upper bound' if g else 'is allocated'}. #tokens: {num_tokens}, KV size: {s:.2f} GB")
'''
    (tmp_path / "sglang" / "srt").mkdir(parents=True)
    (tmp_path / "sglang" / "srt" / "m.py").write_text(source)
    samples = [entry["sample"] for entry in tool.extract("0.0.0", tmp_path)]
    assert samples == [
        "Load weight end. type=Qwen3MoeForCausalLM, avail mem=13.34 GB, mem usage=14.34 GB.",
        "Memory pool end. avail mem=12.34 GB",
        "Decode batch. #running-req: 100, accept len: 13.34, ",
        "Full KV Cache VA upper bound. #tokens: 100, KV size: 13.34 GB",
        "Full KV Cache is allocated. #tokens: 100, KV size: 13.34 GB",
        "KV Cache VA upper bound. #tokens: 100, KV size: 13.34 GB",
        "KV Cache is allocated. #tokens: 100, KV size: 13.34 GB",
    ]
    assert all(unread({"template": s, "reads": e["reads"], "sample": s}) is None
               for s, e in zip(samples, tool.extract("0.0.0", tmp_path)))


# --- the lines of issue 25 (a public DeepSeek-V4-Pro FP8 log on 8 x H200), no bracket prefix ---------------

def test_a_load_end_without_type_gives_the_weights():
    report = parse_sglang_log(["Load weight end. quant=fp8, fmt=e4m3, avail mem=12.25 GB, mem usage=125.65 GB."])
    rank = report.ranks["TP0"]
    assert (rank.weights_gib, rank.load_end_avail_gib, rank.load_detail, rank.model_class) == (
        125.65, 12.25, "quant=fp8, fmt=e4m3", None)
    assert not any("Load weight end" in gap for gap in report.missing)


def test_weights_that_leave_no_kv_cache_are_an_out_of_memory():
    lines = ["Load weight end. quant=fp8, fmt=e4m3, avail mem=12.25 GB, mem usage=125.65 GB.",
             "Scheduler hit an exception: Traceback (most recent call last):",
             "ValueError: Loaded weights leave no GPU memory for the KV cache under --mem-fraction-static=0.88."]
    failure = classify(lines, exited=True)
    assert (failure.cause, failure.message) == ("oom_kv_cache", lines[2])


def test_a_post_capture_pool_replaces_its_upper_bound():
    """0.5.20+ logs the pool's reserved address space first, the memory it backs after graph capture."""
    report = parse_sglang_log([
        BRACKET + "KV Cache VA upper bound. dtype: torch.bfloat16, #tokens: 900, KV size: 40.00 GB",
        BRACKET + "KV Cache VA upper bound. dtype: torch.bfloat16, #tokens: 90, KV size: 4.00 GB",
        BRACKET + "Post-capture KV sizing: KV cache allocated. dtype: torch.bfloat16, #tokens: 500, KV size: 22.50 GB,"
                  " avail mem=3.00 GB",
        BRACKET + "Post-capture KV sizing: draft KV cache allocated. dtype: torch.bfloat16, #tokens: 50, KV size: 2.25 GB",
    ])
    rank = report.ranks["TP0"]
    assert [(p.tokens, p.kv_gib) for p in rank.kv_pools] == [(500, 22.5), (50, 2.25)]
    assert rank.kv_cache_gib == 24.75
