"""Memory figures that follow the hardware are judged only against a baseline of the same hardware (issue 25 §5).

The run behind the issue: the rig's suite on an H100 80GB, its baselines measured on an H200: KV pool 23.50 GiB
and device peak 28.5 GiB against 41.68 / 49.67 were called `improved`; on a larger GPU they would read REGRESSED.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.baselines import (
    BaselineEntry,
    Baselines,
    MeasuredOn,
    Provenance,
    load_baselines,
    measured_on,
    plan_update,
    save_baselines,
)
from harness.compare import State, comparability, compare_cell
from harness.engine_flags import sizing_flags
from harness.errors import ConfigError
from harness.results import CellResult, RunResult
from harness.suite import GateSettings

CELL = "tiny-dsv3/bf16/none/tp1"
ARGS = ["--attention-backend", "triton", "--mem-fraction-static", "0.3", "--skip-server-warmup"]
H200 = {"index": 0, "name": "NVIDIA H200", "memory_total_gib": 140.4}
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_gib": 79.65}
PROVENANCE = Provenance(source="harness", date="2026-11-29", hardware="1x NVIDIA H200", run_id="main-r3")


def result(gpu: dict, memory: dict, args: list[str] = ARGS) -> CellResult:
    return CellResult(cell_id=CELL, suite="gpu-sglang", status="ok",
                      cell={"engine": "sglang", "server_args": args, "env": {}, "hardware": {"vendor": "nvidia"}},
                      memory=memory, machine={"gpus": [gpu, {**gpu, "index": 1}], "devices": [0]})


def entry(metric: str, value: float, on: MeasuredOn | None) -> BaselineEntry:
    return BaselineEntry(metric=metric, provenance=PROVENANCE, value=value, measured=on)


ON_H200 = MeasuredOn("NVIDIA H200", 140, (("--mem-fraction-static", "0.3"),))


def verdicts(measured: CellResult, baseline: dict[str, BaselineEntry]) -> dict[str, tuple[State, str]]:
    return {v.metric: (v.state, v.reason) for v in compare_cell(CELL, measured, baseline, GateSettings())}


def test_what_a_result_was_measured_on():
    assert measured_on(result(H100, {})) == MeasuredOn("NVIDIA H100 80GB HBM3", 80, (("--mem-fraction-static", "0.3"),))
    cpu = CellResult(cell_id=CELL, suite="s", status="ok", cell={"engine": "vllm", "server_args": [],
                     "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}, "hardware": {"vendor": "cpu"}}, machine={"gpus": []})
    assert measured_on(cpu) == MeasuredOn(None, None, (("VLLM_CPU_KVCACHE_SPACE", "1"),))


def test_sizing_flags_in_every_spelling():
    assert sizing_flags("sglang", ["--mem_fraction_static=0.5", "--disable-cuda-graph", "--context-length", "4096",
                                   "--tp", "2"], {"X": "1"}) == (
        ("--context-length", "4096"), ("--disable-cuda-graph", "true"), ("--mem-fraction-static", "0.5"))


def test_the_issue_run_an_h100_against_h200_baselines_gives_no_verdict_on_device_figures():
    measured = result(H100, {"kv_cache_gib": 23.50, "device_peak_gib": 28.5, "weights_gib": 1.20})
    baseline = {"memory.kv_cache_gib": entry("memory.kv_cache_gib", 41.68, ON_H200),
                "memory.device_peak_gib": entry("memory.device_peak_gib", 49.67, ON_H200),
                "memory.weights_gib": entry("memory.weights_gib", 1.21, ON_H200)}
    found = verdicts(measured, baseline)
    for metric in ("memory.kv_cache_gib", "memory.device_peak_gib"):
        state, reason = found[metric]
        assert state is State.NO_BASELINE and reason.startswith("no baseline for this hardware: measured on "
                                                                "NVIDIA H100 80GB HBM3 80 GiB")
    assert found["memory.weights_gib"][0] is State.PASS  # the checkpoint's bytes do not follow the GPU


def test_a_larger_gpu_is_no_regression_either():
    measured = result({**H200, "name": "NVIDIA B200", "memory_total_gib": 178.4}, {"kv_cache_gib": 90.0})
    assert verdicts(measured, {"memory.kv_cache_gib": entry("memory.kv_cache_gib", 41.68, ON_H200)})[
        "memory.kv_cache_gib"][0] is State.NO_BASELINE


def test_the_same_hardware_is_gated():
    measured = result(H200, {"kv_cache_gib": 30.0})
    state, reason = verdicts(measured, {"memory.kv_cache_gib": entry("memory.kv_cache_gib", 41.68, ON_H200)})[
        "memory.kv_cache_gib"]
    assert state is State.IMPROVED


def test_other_sizing_flags_give_no_verdict():
    measured = result(H200, {"kv_cache_gib": 60.0}, args=["--mem-fraction-static", "0.5"])
    state, reason = verdicts(measured, {"memory.kv_cache_gib": entry("memory.kv_cache_gib", 41.68, ON_H200)})[
        "memory.kv_cache_gib"]
    assert state is State.NO_BASELINE
    assert "measured with --mem-fraction-static 0.5, the baseline with --mem-fraction-static 0.3" in reason


def test_an_old_entry_that_recorded_no_memory_size_gives_no_verdict_on_a_gpu():
    measured = result(H200, {"kv_cache_gib": 80.0, "weights_gib": 1.2})
    old = {"memory.kv_cache_gib": entry("memory.kv_cache_gib", 41.68, None),
           "memory.weights_gib": entry("memory.weights_gib", 1.2, None)}
    found = verdicts(measured, old)
    assert found["memory.kv_cache_gib"][0] is State.NO_BASELINE and "promote it again" in found[
        "memory.kv_cache_gib"][1]
    assert found["memory.weights_gib"][0] is State.PASS


def test_figures_of_machines_without_gpus_stay_comparable():
    assert comparability("memory.kv_cache_gib", MeasuredOn(), MeasuredOn(recorded=False)) is None
    assert comparability("memory.host_rss_peak_gib", MeasuredOn(), MeasuredOn("NVIDIA H200", 140)) is None


def test_one_entry_per_hardware_and_the_matching_one_is_used():
    on_h100 = MeasuredOn("NVIDIA H100 80GB HBM3", 80, (("--mem-fraction-static", "0.3"),))
    both = entry("memory.kv_cache_gib", 41.68, ON_H200)
    both = replace(both, per_hardware=(both, entry("memory.kv_cache_gib", 23.5, on_h100)))
    state, reason = verdicts(result(H100, {"kv_cache_gib": 30.0}), {"memory.kv_cache_gib": both})[
        "memory.kv_cache_gib"]
    assert state is State.REGRESSED and "23.50" in reason


def _run(measured: CellResult) -> RunResult:
    return RunResult(run_id="r", suite="gpu-sglang", planned=(CELL,), cells=(measured,))


def test_promotion_keeps_one_entry_per_hardware_and_the_file_round_trips(tmp_path):
    path = tmp_path / "gpu-sglang.yaml"
    baselines = Baselines("gpu-sglang", path, {CELL: {"memory.kv_cache_gib": entry("memory.kv_cache_gib", 41.68,
                                                                                    ON_H200)}})
    updated, changes, refused = plan_update(baselines, _run(result(H100, {"kv_cache_gib": 23.5, "weights_gib": 1.2})),
                                            today="2026-12-05")
    assert refused == [] and [c.describe() for c in changes] == [
        f"{CELL} memory.kv_cache_gib: none -> 23.5", f"{CELL} memory.weights_gib: none -> 1.2"]
    kv = updated.cells[CELL]["memory.kv_cache_gib"]
    assert [(e.value, e.measured.gpu) for e in kv.alternatives] == [(41.68, "NVIDIA H200"),
                                                                    (23.5, "NVIDIA H100 80GB HBM3")]
    save_baselines(updated)
    assert "- value: 41.68" in path.read_text()
    again = load_baselines(path).cells[CELL]["memory.kv_cache_gib"]
    assert [(e.value, e.measured) for e in again.alternatives] == [(e.value, e.measured) for e in kv.alternatives]
    # the H100's figure again: it replaces the H100 entry only
    updated, _, _ = plan_update(load_baselines(path), _run(result(H100, {"kv_cache_gib": 24.0})), today="2026-12-06")
    assert [e.value for e in updated.cells[CELL]["memory.kv_cache_gib"].alternatives] == [41.68, 24.0]


def _write(path, body: str) -> None:
    path.write_text("kind: harness.baselines\nschema_version: 1\nsuite: s\ncells:\n  c/q/none/tp1:\n"
                    "    memory.kv_cache_gib:\n" + body)


@pytest.mark.parametrize("body, message", [
    ("    - value: 1.0\n      provenance: {source: harness, date: '2026-12-05'}\n", "needs 'measured_on'"),
    ("    - value: 1.0\n      measured_on: {gpu: A, gpu_memory_gib: 80}\n"
     "      provenance: {source: harness, date: '2026-12-05'}\n"
     "    - value: 2.0\n      measured_on: {gpu: A, gpu_memory_gib: 80}\n"
     "      provenance: {source: harness, date: '2026-12-05'}\n", "same hardware as entry 0"),
    ("      value: 1.0\n      measured_on: {gpu: A, gpu_memory: 80}\n"
     "      provenance: {source: harness, date: '2026-12-05'}\n", "gpu_memory"),
])
def test_a_bad_per_hardware_entry_is_refused_naming_it(tmp_path, body, message):
    path = tmp_path / "s.yaml"
    _write(path, body)
    with pytest.raises(ConfigError, match=message):
        load_baselines(path)
