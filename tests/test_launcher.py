"""Real child processes: the SGLang test double under every fault, and nothing left behind."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from harness.cellrun import CellInterrupted, RunOptions, run_cell
from harness.compare import State, compare_cell
from harness.evals.base import EvalInfraError
from harness.suite import GateSettings
from tests.fake_cells import fake_cell, recorded_pids
from tests.helpers import assert_nothing_survives


def run(tmp_path, cell, evaluator=None):
    options = RunOptions(evaluator=evaluator) if evaluator else RunOptions()
    return run_cell(cell, tmp_path / "run", options)


def test_healthy_server_is_measured_and_torn_down(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, tp=2))
    assert result.status == "ok" and result.error is None
    assert result.memory["weights_gib"] == 40.1 and result.memory["kv_cache_gib"] == 20.0
    assert result.memory["host_rss_peak_gib"] > 0 and "device_peak_gib" not in result.memory  # no GPU here
    assert result.memory_report["sampler"] == "process-tree-rss"
    assert sorted(result.memory_report["ranks"]) == ["TP0", "TP1"]
    assert result.engine["version"] == "0.0.0-fake"
    assert result.timings["launch_to_ready_s"] < 10 and result.timings["teardown_s"] < 5
    log = (tmp_path / "run" / "cells" / "fake__quark-mxfp4__none__tp2" / "server.log").read_text()
    assert log.startswith("# harness: ") and "-m sglang.launch_server --model-path fake/model" in log
    assert "The server is fired up and ready to roll!" in log
    assert len(recorded_pids(tmp_path)) == 4  # server, 2 schedulers, detokenizer
    assert_nothing_survives(tmp_path)


def test_a_shared_device_keeps_no_free_memory_deltas(tmp_path):
    # --share-gpus: SGLang's `mem usage` of the weights is a drop in the device's free memory, which other
    # servers' allocations move too; the KV pool (tokens x bytes) stays.
    result = run_cell(fake_cell(tmp_path, tp=2), tmp_path / "run", RunOptions(exclusive_devices=False))
    assert result.status == "ok" and result.memory_report["shared_device"] is True
    assert "weights_gib" not in result.memory and result.memory["kv_cache_gib"] == 20.0
    assert max(rank["weights_gib"] for rank in result.memory_report["ranks"].values()) == 40.1  # still reported
    assert_nothing_survives(tmp_path)


def test_crash_during_load_ends_the_wait_at_once(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, "crash_during_load", launch_s=60))
    assert result.status == "infra_error" and result.error.cause == "crash"
    assert "ImportError: fake" in result.error.message and "Traceback" in result.error.log_tail
    assert result.timings["launch_to_ready_s"] < 10
    assert_nothing_survives(tmp_path)


def test_hang_before_ready_times_out(tmp_path):
    start = time.monotonic()
    result = run(tmp_path, fake_cell(tmp_path, "hang_before_ready", launch_s=2))
    assert result.error.cause == "timeout" and time.monotonic() - start < 15
    assert_nothing_survives(tmp_path)


def test_oom_in_the_log_ends_the_wait_while_the_process_lives(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, "oom", launch_s=60))
    assert result.error.cause == "oom_load" and "HIP out of memory" in result.error.message
    assert result.timings["launch_to_ready_s"] < 10
    assert_nothing_survives(tmp_path)


def test_the_glm5_mtp_load_failure_is_a_regression_not_infra(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, "shape_mismatch", launch_s=60))
    assert result.error.cause == "weight_shape_mismatch"
    verdicts = compare_cell(result.cell_id, result, {}, GateSettings())
    assert [v.state for v in verdicts] == [State.REGRESSED]
    assert_nothing_survives(tmp_path)


def test_the_qwen3_next_fp8_failure_is_classified(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, "fp8_block", tp=4, launch_s=60))
    assert result.error.cause == "fp8_block_divisibility"
    assert "output_partition_size = 8" in result.error.message
    assert_nothing_survives(tmp_path)


def test_server_that_exits_mid_eval(tmp_path):
    def evaluator(cell, base_url, cell_dir):
        for i in range(5):
            request = urllib.request.Request(base_url + "/v1/completions", data=json.dumps({"prompt": "x"}).encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=5).read()
            except OSError as error:
                raise EvalInfraError("request_errors", f"request {i} failed: {error}") from None
        return {}

    result = run(tmp_path, fake_cell(tmp_path, "exit_mid_eval", env={"FAKE_SGLANG_EXIT_AFTER": "2"}), evaluator)
    assert result.status == "infra_error" and result.error.cause == "scheduler_exception"
    assert "fake engine died mid-eval" in result.error.log_tail
    assert_nothing_survives(tmp_path)


def test_stubborn_grandchildren_are_killed(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, "stubborn_children", tp=2))
    assert result.status == "ok"
    assert len(recorded_pids(tmp_path)) == 5  # server, 2 schedulers, detokenizer, setsid grandchild
    assert_nothing_survives(tmp_path)


GSM8K_FEW = {"gsm8k": {"protocol": "sglang-fewshot", "dataset": "synthetic-arith-v1", "questions": 4}}


def test_accept_length_is_read_for_spec_cells(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, spec="mtp", env={"FAKE_SGLANG_ACCEPT": "2.71"}, evals=GSM8K_FEW))
    assert result.accept_length == 2.71
    assert result.spec["after"] == {"avg_spec_accept_length": 2.71}
    assert result.memory_report["ranks"]["TP0"]["draft_weights_gib"] == 1.0


def test_a_load_only_spec_cell_reads_no_speculative_figures(tmp_path):
    result = run(tmp_path, fake_cell(tmp_path, spec="mtp", env={"FAKE_SGLANG_ACCEPT": "2.71"}))
    assert result.status == "ok" and result.accept_length is None and result.spec == {}


def test_ctrl_c_tears_down_and_keeps_what_was_measured(tmp_path):
    def evaluator(cell, base_url, cell_dir):
        raise KeyboardInterrupt

    with pytest.raises(CellInterrupted) as caught:
        run(tmp_path, fake_cell(tmp_path), evaluator)
    result = caught.value.result
    assert result.error.cause == "interrupted" and result.memory["weights_gib"] == 40.0
    assert_nothing_survives(tmp_path)


def test_the_run_stopping_ends_the_readiness_wait_and_tears_the_server_down(tmp_path):
    """The scheduler's stop event reaches the launcher's wait (harness.interrupts.stop_on): a server that
    never becomes ready is torn down at once, not at its launch timeout, and the cell is interrupted."""
    import threading

    from harness import interrupts

    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    start = time.monotonic()
    with interrupts.stop_on(stop), pytest.raises(CellInterrupted) as caught:
        run(tmp_path, fake_cell(tmp_path, "hang_before_ready", launch_s=120))
    assert caught.value.result.error.cause == "interrupted" and time.monotonic() - start < 30
    assert_nothing_survives(tmp_path)
