"""GPU tool outputs (fixtures in the tools' documented formats), the sampler, and vLLM's spec counters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.engines import devices
from harness.engines.devices import (
    PeakSampler,
    known_readings,
    parse_amd_smi_metric,
    parse_amd_smi_partitions,
    parse_nvidia_smi,
    parse_rocm_smi_meminfo,
    partitioned,
    tree_rss_gib,
)
from harness.engines.vllm import VLLM, parse_spec_counters


def test_nvidia_smi_csv():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 1024\n1, NVIDIA H100 80GB HBM3, 81559, 40960\n"
    parsed = parse_nvidia_smi(text)
    assert parsed[1][0] == "NVIDIA H100 80GB HBM3"
    assert parsed[0][1] == pytest.approx(79.647, abs=1e-3) and parsed[1][2] == pytest.approx(40.0)


def test_rocm_smi_meminfo_json():
    text = json.dumps({"card0": {"VRAM Total Memory (B)": "206141652992", "VRAM Total Used Memory (B)": "283963392"},
                       "card7": {"VRAM Total Memory (B)": "206141652992", "VRAM Total Used Memory (B)": "107374182400"},
                       "system": {"Driver version": "6.10.5"}})
    parsed = parse_rocm_smi_meminfo(text)
    assert sorted(parsed) == [0, 7] and parsed[7][1] == pytest.approx(100.0)
    assert parsed[0][0] == pytest.approx(191.98, abs=0.01)


def test_amd_smi_metric_json_both_layouts():
    entry = {"gpu": 3, "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"},
                                     "used_vram": {"value": 51200, "unit": "MB"}}}
    for document in ([entry], {"gpu_data": [entry]}):
        parsed = parse_amd_smi_metric(json.dumps(document))
        assert parsed[3] == (pytest.approx(191.98, abs=0.01), pytest.approx(50.0))


def _child_holding_200_mib() -> subprocess.Popen:
    """A child that has touched 200 MiB, returned once it says so (a busy machine takes seconds to start one)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(200 << 20); print('ready', flush=True);"
                              " time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


# --- amd-smi's history (section 3 of issue 28): each output as amd-smi's own source prints it, or as a public
# issue shows it. MB in amd-smi is bytes // (1024 * 1024) (amdsmi_cli/amdsmi_commands.py, metric --mem-usage).

# ROCm 6.0 (ROCm/amdsmi tag rocm-6.0.0, amdsmi_cli/amdsmi_logger.py `_print_json_output`): one GPU (`-g 0`, or a
# one-GPU host) prints `self.output`, a bare object, not a list; amdsmi_commands.py stores
# `total_vram // (1024*1024)` as a plain integer, with no {value, unit}. 6.1 wraps it: `json_output = [self.output]`.
AMD_SMI_6_0_ONE_GPU = """{
    "gpu": 0,
    "mem_usage": {
        "total_vram": 196592,
        "used_vram": 283,
        "free_vram": 196309,
        "total_visible_vram": 196592,
        "used_visible_vram": 283,
        "free_visible_vram": 196309,
        "total_gtt": 128716,
        "used_gtt": 10,
        "free_gtt": 128706
    }
}"""

# ROCm 6.1 (tag rocm-6.1.0, amdsmi_commands.py metric --mem-usage): known values become {"value": v, "unit": "MB"};
# one the library could not read stays the bare string "N/A" (`if value != "N/A"` skips the wrapping).
AMD_SMI_6_1_NA = json.dumps([
    {"gpu": 0, "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"}, "used_vram": "N/A",
                             "free_vram": "N/A"}},
    {"gpu": 1, "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"}, "used_vram": {"value": 51200, "unit": "MB"},
                             "free_vram": {"value": 145392, "unit": "MB"}}},
], indent=4)

# amd-smi run by a user outside the render and video groups prints this line on stdout before its output
# (ROCm/amdsmi#130: `amd-smi monitor` on an MI300X; amdsmi_helpers.py `check_required_groups` uses print()).
GROUP_WARNING = "WARNING: User is missing the following required groups: render, video. Please add user to these groups."


def test_amd_smi_before_6_1_prints_one_gpu_as_a_bare_object_of_plain_integers():
    assert parse_amd_smi_metric(AMD_SMI_6_0_ONE_GPU) == {0: (pytest.approx(191.98, abs=0.01),
                                                             pytest.approx(283 / 1024))}


def test_amd_smi_na_is_unknown_never_zero_and_never_a_crash():
    parsed = parse_amd_smi_metric(AMD_SMI_6_1_NA)
    assert parsed[0] == (pytest.approx(191.98, abs=0.01), None)
    assert parsed[1][1] == pytest.approx(50.0)
    # "N/A" inside {value, unit} (the issue's report; amd-smi 6.0 to 6.3's sources keep it bare), a string
    # number, a mem_usage that is "N/A" itself, and a unit harness does not know: each unknown or exact.
    odd = json.dumps([{"gpu": 2, "mem_usage": {"total_vram": {"value": "N/A", "unit": "MB"},
                                                "used_vram": {"value": "N/A"}}},
                      {"gpu": 3, "mem_usage": {"total_vram": {"value": "16384"}, "used_vram": {"value": "8192"}}},
                      {"gpu": 4, "mem_usage": "N/A"},
                      {"gpu": 5, "mem_usage": {"total_vram": {"value": 1, "unit": "furlongs"}, "used_vram": 0}}])
    assert parse_amd_smi_metric(odd) == {2: (None, None), 3: (16.0, 8.0), 4: (None, None), 5: (None, 0.0)}


@pytest.mark.parametrize("before", [GROUP_WARNING, "WARNING: No JSON data to report", f"{GROUP_WARNING}\n[oops]"])
def test_warnings_printed_before_the_json_are_skipped(before):
    assert parse_amd_smi_metric(f"{before}\n{AMD_SMI_6_1_NA}")[1][1] == pytest.approx(50.0)
    assert parse_amd_smi_metric(f"{before}\n{AMD_SMI_6_0_ONE_GPU}")[0][1] == pytest.approx(283 / 1024)


@pytest.mark.parametrize("text", ["", "WARNING: No JSON data to report\n", f"{GROUP_WARNING}\n", "{}", "[]",
                                  '{"gpu_data": []}', "[{broken"])
def test_no_json_at_all_is_no_reading(text):
    assert parse_amd_smi_metric(text) == {} and parse_rocm_smi_meminfo(text) == {}


def test_rocm_smi_na_and_a_warning_before_its_json():
    # rocm-smi logs "WARNING: No JSON data to report" when a query found nothing (rocm_smi.py, ROCm/rocm_smi_lib).
    text = "WARNING: No JSON data to report\n" + json.dumps(
        {"card0": {"VRAM Total Memory (B)": "206141652992", "VRAM Total Used Memory (B)": "N/A"}})
    assert parse_rocm_smi_meminfo(text) == {0: (pytest.approx(191.98, abs=0.01), None)}


# MI300X in CPX mode (ROCm/ROCm#4750, MI300X OAM, ROCm 6.3 and 6.4): eight logical GPUs per card, and amd-smi and
# rocm-smi report each partition's VRAM as the whole card's (rocminfo and KFD's mem_banks say 24 GiB each).
# `amd-smi static --partition --json` names the mode per GPU (amdsmi_commands.py static, `partition`:
# compute_partition, memory_partition, and partition_id from ROCm 6.3).
def cpx_host(cards: int, used_mib: list[int]) -> tuple[str, str]:
    metric = [{"gpu": g, "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"},
                                       "used_vram": {"value": used_mib[g // 8], "unit": "MB"}}}
              for g in range(cards * 8)]
    static = [{"gpu": g, "partition": {"compute_partition": "CPX", "memory_partition": "NPS1",
                                       "partition_id": g % 8}} for g in range(cards * 8)]
    return json.dumps(metric), json.dumps(static)


def test_cpx_partitions_report_the_whole_card_so_their_memory_is_unknown():
    metric, static = cpx_host(2, [160000, 300])
    split = partitioned(parse_amd_smi_partitions(static))
    assert split == set(range(16))
    readings = known_readings(parse_amd_smi_metric(metric), split)
    # Never 16 cards of 192 GiB, never card 0's 156 GiB read as one partition's: unknown, for every partition.
    assert set(readings.values()) == {(None, None)}


def test_spx_cards_and_tools_without_partition_info_keep_their_figures():
    spx = json.dumps([{"gpu": 0, "partition": {"compute_partition": "SPX", "memory_partition": "NPS1"}},
                      {"gpu": 1, "partition": {"compute_partition": "N/A", "memory_partition": "N/A"}}])
    assert partitioned(parse_amd_smi_partitions(spx)) == set()
    assert partitioned(parse_amd_smi_partitions("")) == set()  # an amd-smi without --partition
    readings = known_readings(parse_amd_smi_metric(AMD_SMI_6_1_NA), set())
    assert readings[1][1] == pytest.approx(50.0)


def fake_tools(monkeypatch, outputs: dict[str, str | None]) -> None:
    """_run answering as amd-smi would: `outputs` by the command's first two words."""
    monkeypatch.setattr(devices, "_run", lambda argv, timeout=10.0: outputs.get(" ".join(argv[:2])))
    monkeypatch.setattr(devices, "_rocm_version", lambda: "6.3.3")


def test_the_amd_backend_on_a_cpx_host_discovers_every_partition_and_samples_none(monkeypatch):
    metric, static = cpx_host(1, [160000])
    fake_tools(monkeypatch, {"amd-smi metric": f"{GROUP_WARNING}\n{metric}", "amd-smi static": static})
    backend = devices._amd_backend()
    assert backend is not None and [g.index for g in backend.gpus] == list(range(8))
    assert {g.memory_total_gib for g in backend.gpus} == {None}
    assert backend.read_used() == {} and backend.runtime["partitioned_gpus"] == list(range(8))


def test_the_amd_backend_on_rocm_6_0_with_one_gpu(monkeypatch):
    fake_tools(monkeypatch, {"amd-smi metric": AMD_SMI_6_0_ONE_GPU, "amd-smi static": None})
    backend = devices._amd_backend()
    assert backend is not None and backend.name == "amd-smi"
    assert backend.gpus[0].memory_total_gib == pytest.approx(191.98, abs=0.01)
    assert backend.read_used() == {0: pytest.approx(283 / 1024)}


def test_the_amd_backend_skips_an_na_used_figure_and_the_sampler_keeps_no_peak_for_it(monkeypatch):
    fake_tools(monkeypatch, {"amd-smi metric": AMD_SMI_6_1_NA, "amd-smi static": None})
    backend = devices._amd_backend()
    monkeypatch.setattr(devices, "gpu_backend", lambda: backend)
    sampler = PeakSampler([0, 1])
    sampler.sample()
    assert sampler.errors == 0 and sampler.peaks == {"gpu1": pytest.approx(50.0)}  # gpu0: N/A, no figure


def test_rocm_smi_answers_when_amd_smi_prints_no_json(monkeypatch):
    rocm = json.dumps({"card0": {"VRAM Total Memory (B)": "206141652992", "VRAM Total Used Memory (B)": "1073741824"}})
    fake_tools(monkeypatch, {"amd-smi metric": "WARNING: No JSON data to report\n", "rocm-smi --showmeminfo": rocm})
    backend = devices._amd_backend()
    assert backend is not None and backend.name == "rocm-smi" and backend.read_used() == {0: pytest.approx(1.0)}


def test_process_tree_rss_counts_children():
    child = _child_holding_200_mib()
    try:
        sampler = PeakSampler([], interval_s=0.05, pid=lambda: os.getpid()).start()
        import time
        time.sleep(1.0)
        peaks = sampler.stop()
        assert sampler.source == "process-tree-rss"
        assert peaks["process-tree"] >= 0.2  # this process plus the 200 MiB child
        assert tree_rss_gib(child.pid) >= 0.19
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert tree_rss_gib(child.pid) == 0.0


def test_a_child_sharing_its_parents_address_space_is_counted_once():
    """A vfork() child reads its parent's RSS until it execs (issue 25 §4): counted once, whatever kcmp says of
    it; a child of its own address space is counted."""
    child = _child_holding_200_mib()
    try:
        with_child = tree_rss_gib(os.getpid(), same_vm=lambda a, b: 1)
        shared = tree_rss_gib(os.getpid(), same_vm=lambda a, b: 0 if a == child.pid else 1)
        assert with_child - shared >= 0.19
        assert shared == pytest.approx(tree_rss_gib(os.getpid(), same_vm=lambda a, b: 1) - tree_rss_gib(child.pid),
                                       abs=0.02)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="kcmp's number is per architecture")
def test_kcmp_tells_a_shared_address_space_from_a_childs_own():
    from harness.engines.devices import _same_vm

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _same_vm(os.getpid(), os.getpid()) == 0
        assert _same_vm(os.getpid(), child.pid) not in (0, None)
    finally:
        child.kill()
        child.wait()


def test_vllm_spec_counters_give_accept_length():
    before = parse_spec_counters('vllm:spec_decode_num_drafts_total{model_name="m"} 100.0\n'
                                 'vllm:spec_decode_num_accepted_tokens_total{model_name="m"} 150.0\n')
    after = parse_spec_counters("# HELP x\nvllm:spec_decode_num_drafts_total{model_name=\"m\"} 1100.0\n"
                                "vllm:spec_decode_num_accepted_tokens_total{model_name=\"m\"} 1850.0\n"
                                "vllm:other 3\n")
    assert VLLM.accept_length(before, after) == 2.7
    assert VLLM.accept_length(after, after) is None and parse_spec_counters("nothing 1\n") is None
