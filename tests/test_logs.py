"""Log parsing and failure classification against one fixture per SGLang format variant."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.engines.failures import classify, first_fatal_line
from harness.engines.logs import parse_sglang_log, parse_vllm_log

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
GOLDEN = Path(__file__).parent / "golden" / "logs"


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.log")))
def test_memory_report_golden(name):
    parse = parse_vllm_log if name.startswith("vllm") else parse_sglang_log
    text = json.dumps(parse(lines(name)).to_dict(), indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / (name.removesuffix(".log") + ".json")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_new_format_tp1():
    report = parse_sglang_log(lines("sglang_tp1_new.log"))
    rank = report.ranks["TP0"]
    assert (rank.weights_gib, rank.load_end_avail_gib, rank.load_elapsed_s) == (29.57, 160.55, 9.12)
    assert rank.model_class == "Qwen3MoeForCausalLM" and rank.load_detail == "quant=fp8, fmt=e4m3"
    assert rank.kv_cache_gib == pytest.approx(110.18) and rank.kv_tokens == 1203424
    assert rank.kv_dtype == "torch.bfloat16" and rank.pool_end_avail_gib == 49.20
    assert rank.graph_phases == {"target decode": 0.45} and rank.graph_avail_gib == 48.65
    assert report.capacity["max_total_num_tokens"] == 1203424 and report.capacity["available_gpu_mem"] == 48.65
    assert report.ready and report.missing == [] and report.unparsed == []
    assert report.gated() == {"weights_gib": 29.57, "kv_cache_gib": 110.18, "graph_gib": 0.45}


def test_old_format_without_dtype_and_oldest_graph_order():
    rank = parse_sglang_log(lines("sglang_tp1_old.log")).ranks["TP0"]
    assert rank.weights_gib == 15.04 and rank.load_detail == "dtype=torch.bfloat16" and rank.load_elapsed_s is None
    assert rank.kv_dtype is None and rank.kv_cache_gib == pytest.approx(50.2)
    assert rank.graph_gib == 0.93 and rank.graph_avail_gib == 0.53


def test_tp8_ep8_interleaved_ranks_mla_and_mtp_draft():
    report = parse_sglang_log(lines("sglang_tp8_ep8_mla_mtp.log"))
    assert sorted(report.ranks) == [f"TP{r} EP{r}" for r in range(8)]
    assert report.ranks["TP7 EP7"].weights_gib == 46.37 and report.ranks["TP0 EP0"].weights_gib == 46.30
    assert all(r.draft_weights_gib == -0.15 for r in report.ranks.values())
    assert report.ranks["TP3 EP3"].draft_model_class == "DeepseekV3ForCausalLMNextN"
    # The MLA pool and the draft's own pool, single-buffer form.
    assert report.ranks["TP2 EP2"].kv_cache_gib == pytest.approx(69.18)
    assert report.ranks["TP0 EP0"].graph_phases == {"target decode": 0.45, "draft decode": 0.21,
                                                   "draft extend step=0": 0.12}
    assert report.gated()["weights_gib"] == 46.37 and report.gated()["graph_gib"] == 0.78
    assert report.accept_length == 2.71 and report.missing == []


def test_online_quantization_debug_lines():
    report = parse_sglang_log(lines("sglang_online_quant_debug.log"))
    rank = report.ranks["TP0"]
    assert (rank.peak_before_load_gib, rank.load_increase_gib) == (1.204, 4.112)
    assert rank.load_peak_gib == pytest.approx(5.316)
    assert rank.online_quant == {"quantization": "quark_mxfp4", "layers": 252,
                                 "types": "QKVParallelLinear, RowParallelLinear, MergedColumnParallelLinear"}
    assert rank.graph_gib == 0.61 and report.gated()["load_peak_gib"] == 5.316


def test_dp_and_pp_prefixes_and_unparsed_lines_are_reported():
    report = parse_sglang_log(lines("sglang_dp2_pp2.log"))
    assert sorted(report.ranks) == ["DP0 PP0 TP0", "DP0 PP1 TP1", "DP1 PP0 TP0"]
    assert report.gated()["weights_gib"] == 9.5 and report.gated()["kv_cache_gib"] == 42.0
    assert report.unparsed == ["[2026-06-01 10:00:12 DP0 PP1 TP1] Load weight end. this line is malformed "
                               "avail mem=broken"]


def test_missing_lines_are_named_not_guessed():
    report = parse_sglang_log(lines("sglang_oom_load.log"))
    assert report.missing == ["TP0: no 'Load weight end' line", "TP0: no 'KV Cache is allocated' line"]
    assert report.gated() == {}
    assert parse_sglang_log([]).missing == ["no per-rank memory line at all"]


def test_vllm_lines_per_rank():
    report = parse_vllm_log(lines("vllm_tp2.log"))
    assert report.ranks["TP1"].weights_gib == 15.012 and report.ranks["TP0"].graph_gib == 0.51
    assert report.gated() == {"weights_gib": 15.012, "kv_cache_gib": 52.31, "graph_gib": 0.51} and report.ready


@pytest.mark.parametrize(("name", "cause", "excerpt"), [
    ("sglang_oom_load.log", "oom_load", "HIP out of memory"),
    ("sglang_oom_graph.log", "oom_graph_capture", "CUDA out of memory"),
    ("sglang_not_enough_memory.log", "oom_kv_cache", "Not enough memory"),
    ("sglang_glm5_mtp_shape_mismatch.log", "weight_shape_mismatch", "torch.Size([6144, 6144])"),
    ("sglang_qwen3_next_fp8_tp4.log", "fp8_block_divisibility",
     "output_partition_size = 8 is not divisible by weight quantization block_n = 128"),
    ("sglang_watchdog.log", "watchdog", "watchdog timeout"),
    ("sglang_crash.log", "crash", "ImportError: libamdhip64.so.6"),
])
def test_failure_classification(name, cause, excerpt):
    failure = classify(lines(name), exited=True)
    assert failure.cause == cause and excerpt in failure.message


def test_scheduler_exception_without_a_more_specific_cause():
    failure = classify(["[2026-04-20 12:00:00 TP1] Scheduler hit an exception: Traceback (most recent call last):",
                        "KeyError: 'model.layers.3.mlp.experts.w13_weight'"], exited=True)
    assert failure.cause == "scheduler_exception"


def test_healthy_logs_classify_as_nothing_or_timeout():
    assert classify(lines("sglang_tp1_new.log"), exited=False) is None
    assert classify(lines("sglang_tp1_new.log"), exited=False, timed_out=True).cause == "timeout"
    assert classify(lines("sglang_tp1_new.log"), exited=True).cause == "crash"
    assert classify(lines("vllm_cpu.log"), exited=False) is None  # its shutdown warnings are no failure


def test_fatal_lines_end_a_wait():
    assert first_fatal_line("torch.OutOfMemoryError: HIP out of memory").cause == "oom"
    assert first_fatal_line("[x] Load weight begin. avail mem=1.00 GB") is None
    assert first_fatal_line("Traceback (most recent call last):") is None


def test_vllm_cpu_lines():
    # vLLM's CPU worker (vllm-cpu 0.32, the local-numerics engine) prints no "Model loading took" and no
    # "Available KV cache memory": it states the KV cache it was given and its size in tokens instead.
    report = parse_vllm_log(lines("vllm_cpu.log"))
    assert report.ranks["TP0"].kv_cache_gib == 1.0 and report.ranks["TP0"].kv_tokens == 2_097_152
    assert report.gated() == {"kv_cache_gib": 1.0} and report.ready
    assert report.missing == ["TP0: no 'Model loading took' line"]
