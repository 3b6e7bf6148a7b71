"""GPU tool outputs (fixtures in the tools' documented formats), the sampler, and vLLM's spec counters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.engines.devices import (
    PeakSampler,
    parse_amd_smi_metric,
    parse_nvidia_smi,
    parse_rocm_smi_meminfo,
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
