"""Log parsing and failure classification: synthetic fixtures per format variant, and a corpus of real logs.

tests/fixtures/logs/*.log are synthetic (one per format variant, golden = the parser's JSON, reviewed);
the real corpus is tests/fixtures/logs/real/ (logs from public reports) and the GPU rig's SGLang 0.5.17
server logs (tests/fixtures/rig/logs/, named by `path:` in real/INDEX.yaml), each with a hand-written
golden of the figures a person reads off it (tests/golden/logs/real/, sources in real/INDEX.yaml).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from harness.engines.failures import classify, first_fatal_line
from harness.engines.logs import parse_sglang_log, parse_vllm_log

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
GOLDEN = Path(__file__).parent / "golden" / "logs"
REAL = FIXTURES / "real"
REAL_GOLDEN = GOLDEN / "real"
REAL_INDEX = yaml.safe_load((REAL / "INDEX.yaml").read_text(encoding="utf-8"))
# Real logs that live beside other fixtures (their tests use them where they are): an entry names one by
# `path:`, relative to tests/fixtures. Every log in these folders belongs to the corpus.
ALL_FIXTURES = FIXTURES.parent
ELSEWHERE = (ALL_FIXTURES / "rig" / "logs",)
RIG_SOURCE = "harness GPU rig (benchmarks/gpu_sglang_run.sh), SGLang 0.5.17 bundle, NVIDIA H200"


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


def test_a_shared_device_gates_no_free_memory_delta():
    # The rig's fix suite, eight servers on one H200: this one's weights "used" -6.40 GB of free memory.
    log = (ALL_FIXTURES / "rig" / "logs" / "fixes.dsv3-mtp-quantized__quark-mxfp4__mtp__tp1.log").read_text()
    report = parse_sglang_log(log.splitlines())
    assert report.ranks["TP0"].weights_gib == -6.4 and "weights_gib" in report.gated()
    report.shared_device = True
    assert "weights_gib" not in report.gated() and "graph_gib" not in report.gated()
    assert report.gated()["kv_cache_gib"] == report.ranks["TP0"].kv_cache_gib


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


@pytest.mark.parametrize("module", ["harness_no_such_engine.launch_server", "harness_no_such_engine",
                                    "json.harness_no_such_entrypoint"])
@pytest.mark.process
def test_a_python_without_the_engine_is_launch_failed_as_python_itself_says_it(module):
    """`python -m` of a module its Python lacks, in Python's own words (runpy's, captured here)."""
    import subprocess
    import sys

    said = subprocess.run([sys.executable, "-S", "-m", module], capture_output=True, text=True).stderr
    failure = classify(said.splitlines(), exited=True)
    assert failure.cause == "launch_failed" and "harness_no_such" in failure.message, said


def test_an_import_error_inside_a_started_engine_is_no_launch_failure():
    log = ["Traceback (most recent call last):", '  File "/sglang/srt/server.py", line 3, in <module>',
           "ModuleNotFoundError: No module named 'flashinfer'"]
    assert classify(log, exited=True).cause == "crash"


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


# --- the corpus of real logs -------------------------------------------------------------------------

# The per-rank figures a golden may name, in the order a person reads a startup.
RANK_FIGURES = (
    "init_dist_gib", "load_begin_avail_gib", "weights_gib", "load_end_avail_gib", "load_elapsed_s",
    "model_class", "load_detail", "draft_weights_gib", "draft_model_class", "peak_before_load_gib",
    "load_increase_gib", "online_quant", "kv_dtype", "kv_available_gib", "profiled_max_tokens", "kv_pools",
    "kv_tokens", "kv_k_gib", "kv_v_gib", "kv_cache_gib", "swa_pool", "mamba_pool", "pool_end_avail_gib",
    "graph_begin_avail_gib", "graph_phases", "graph_gib", "graph_avail_gib",
)


def _plain(value):
    """Rounded floats and dicts without None, so a reading compares with a hand-written golden."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def reading(report) -> dict:
    """What the parser read, in the golden's vocabulary: every figure present, nothing absent."""
    ranks = {}
    for label, rank in report.to_dict()["ranks"].items():
        ranks[label] = {name: _plain(rank[name]) for name in RANK_FIGURES if rank[name] not in (None, {}, [])}
    return {"ranks": ranks, "capacity": _plain(report.capacity), "ready": report.ready,
            "accept_length": report.accept_length, "missing": report.missing, "unparsed": report.unparsed}


def expected_reading(golden: dict) -> dict:
    return {"ranks": _plain(golden["ranks"]), "capacity": _plain(golden.get("capacity", {})),
            "ready": golden.get("ready", False), "accept_length": golden.get("accept_length"),
            "missing": golden.get("missing", []), "unparsed": golden.get("unparsed", [])}


def expected_gate(golden: dict) -> dict:
    """The gate's figures: the max over the golden's ranks, computed here, not read from the parser."""
    figures = {}
    for name in ("weights_gib", "kv_cache_gib", "graph_gib"):
        values = [rank[name] for rank in golden["ranks"].values() if name in rank]
        if values:
            figures[name] = round(max(values), 4)
    peaks = [rank["peak_before_load_gib"] + rank["load_increase_gib"] for rank in golden["ranks"].values()
             if "peak_before_load_gib" in rank and "load_increase_gib" in rank]
    if peaks:
        figures["load_peak_gib"] = round(max(peaks), 4)
    return figures


def corpus_log(name: str) -> Path:
    """A corpus entry's log: `real/<name>.log`, or the fixture its `path:` names."""
    path = REAL_INDEX[name].get("path")
    return REAL / f"{name}.log" if path is None else ALL_FIXTURES / path


def test_real_corpus_every_log_has_an_index_entry_and_a_golden():
    goldens = {p.stem for p in REAL_GOLDEN.glob("*.yaml")}
    assert set(REAL_INDEX) == goldens
    here = {name for name, entry in REAL_INDEX.items() if "path" not in entry}
    assert {p.stem for p in REAL.glob("*.log")} == here
    elsewhere = sorted(corpus_log(name) for name in set(REAL_INDEX) - here)
    assert elsewhere == sorted(p for folder in ELSEWHERE for p in folder.glob("*.log"))  # each once, all
    for name, entry in REAL_INDEX.items():
        if name in here:
            assert entry["source"]["url"].startswith("https://github.com/"), name
        else:
            assert entry["source"] == RIG_SOURCE and str(entry["date"]) == "2026-11-29", name
            assert entry["sglang"] == "0.5.17" and entry["setup"], name


@pytest.mark.parametrize("name", sorted(REAL_INDEX))
def test_real_log_reads_as_its_golden(name):
    lines = corpus_log(name).read_text(encoding="utf-8").splitlines()
    golden = yaml.safe_load((REAL_GOLDEN / f"{name}.yaml").read_text(encoding="utf-8"))
    report = parse_sglang_log(lines)
    assert reading(report) == expected_reading(golden)
    assert report.gated() == expected_gate(golden)
    failure = classify(lines, exited=golden["exited"])
    assert (failure.cause if failure else None) == golden["failure"]


# --- forms the real corpus does not hold yet (synthetic lines, in SGLang's formats from its source) -----

def test_prefixes_before_the_bracket_and_bare_lines_are_read():
    report = parse_sglang_log([
        "2026-04-20T12:00:00.123456789Z [2026-04-20 12:00:00 TP1] Load weight begin. avail mem=190.12 GB",  # docker -t
        "[pod/sglang-0/sglang] 2026-04-20T12:00:01.000000000Z [2026-04-20 12:00:01 TP1] Load weight end. elapsed=9.12 s, "
        "type=Qwen3MoeForCausalLM, avail mem=160.55 GB, mem usage=29.57 GB.",  # kubectl logs --prefix --timestamps
        "\x1b[32m[2026-04-20 12:00:02 TP1] Memory pool end. avail mem=49.20 GB\x1b[0m",  # colour codes
        "[2026-04-20 12:00:03] INFO model_runner.py:1364: Load weight end. type=LlamaForCausalLM, "
        "dtype=torch.bfloat16, avail mem=63.46 GB, mem usage=15.04 GB.",  # root logger's level and place
        "Load weight begin. avail mem=78.50 GB",  # no bracket at all: rank TP0
    ])
    tp1, tp0 = report.ranks["TP1"], report.ranks["TP0"]
    assert (tp1.load_begin_avail_gib, tp1.weights_gib, tp1.pool_end_avail_gib) == (190.12, 29.57, 49.2)
    assert (tp0.weights_gib, tp0.load_begin_avail_gib) == (15.04, 78.5) and report.unparsed == []


def test_a_mamba_pool_with_speculative_decodings_intermediate_caches():
    # The speculative form of 0.5.17's line (mem_cache/memory_pool.py), which the rig's logs do not hold.
    rank = parse_sglang_log([
        "[2026-11-29 12:00:00 TP1] Mamba Cache is allocated. max_mamba_cache_size: 96, conv_state size: 0.01GB, "
        "ssm_state size: 0.30GB intermediate_ssm_state_cache size: 0.60GB intermediate_conv_window_cache size: 0.02GB ",
    ]).ranks["TP1"]
    pool = rank.mamba_pool
    assert (pool.states, pool.conv_gib, pool.ssm_gib) == (96, 0.01, 0.3)
    assert (pool.intermediate_ssm_gib, pool.intermediate_conv_window_gib, pool.total_gib) == (0.6, 0.02, 0.93)
    assert rank.kv_cache_gib is None  # a state pool is not the KV cache


def test_labelled_full_and_swa_pools_and_their_sum():
    report = parse_sglang_log([
        "[2026-04-20 12:00:00 TP0] Full KV Cache is allocated. dtype: torch.bfloat16, #tokens: 997846, "
        "K size: 10.00 GB, V size: 10.00 GB",
        "[2026-04-20 12:00:00 TP0] SWA KV Cache is allocated. dtype: torch.bfloat16, #tokens: 798276, "
        "K size: 29.97 GB, V size: 29.97 GB",
        "[2026-04-20 12:00:00 TP0] SWAKVPool mem usage: 79.94 GB, swa size: 798276, full size: 997846",
    ])
    rank = report.ranks["TP0"]
    assert [(p.label, p.tokens) for p in rank.kv_pools] == [("Full", 997846), ("SWA", 798276)]
    assert (rank.kv_k_gib, rank.kv_v_gib, rank.kv_cache_gib) == (39.97, 39.97, 79.94)
    assert rank.swa_pool.mem_usage_gib == 79.94 and report.missing == ["TP0: no 'Load weight end' line"]


def test_unlabelled_swa_pools_are_named_only_when_swakvpool_sizes_tell_them_apart():
    distinct = parse_sglang_log([
        "[2026-01-31 13:50:39 TP0] KV Cache is allocated. #tokens: 300288, K size: 8.38 GB, V size: 5.59 GB",
        "[2026-01-31 13:50:39 TP0] KV Cache is allocated. #tokens: 375360, K size: 1.00 GB, V size: 1.00 GB",
        "[2026-01-31 13:50:39 TP0] SWAKVPool mem usage: 15.97 GB, swa size: 300288, full size: 375360",
    ]).ranks["TP0"]
    assert [p.label for p in distinct.kv_pools] == ["SWA", "Full"]
    equal = parse_sglang_log(lines_of("sglang-pr15464-mimo-v2-flash-swa-tp4")).ranks["TP1"]
    assert [p.label for p in equal.kv_pools] == [None, None]


def test_a_memory_looking_line_of_no_known_form_is_listed_not_guessed():
    line = "[2026-04-20 12:00:00 TP0] Mamba Cache is allocated. max_mamba_cache_size: 64, conv_state size: 1.00 GB"
    assert parse_sglang_log([line]).unparsed == [line]


def lines_of(name: str) -> list[str]:
    return corpus_log(name).read_text(encoding="utf-8").splitlines()


def test_memory_report_table_shows_k_v_pools_and_leaves_out_empty_columns():
    from harness.report.memory import render_memory

    text = render_memory(parse_sglang_log(lines_of("sglang-pr15464-mimo-v2-flash-swa-tp4")))
    assert text.splitlines()[:2] == ["rank      K      V  kv total  kv tokens  avail after pool",
                                     "TP0    4.82   3.21      8.03    1496958             22.59"]
    assert "kv pools TP1: 1496958 tokens K 41.76 + V 27.84; 1496958 tokens K 4.82 + V 3.21" in text
    assert "swa pool TP1: 77.63 GiB, swa 1496958 tokens, full 1496958 tokens" in text
    capacity = render_memory(parse_sglang_log(lines_of("sglang-29575-capacity-line")))
    assert "available_gpu_mem=17.22" in capacity and "missing: no per-rank memory line at all" in capacity
