"""Servers sized in GiB of their GPU (suite `server.memory_gib`), not in a fraction fixed on one GPU (issue 25 §5).

The fixes stage's eight cells sharing a GPU at `--mem-fraction-static 0.06` were sized on 141 GB; on an H100 80GB
one server was left no KV cache. memory_gib 8.4 gives 0.06 on the H200 and 0.105 on the H100.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cellrun import LaunchFailed, gpu_memory_gib, sized_for
from harness.engine_flags import memory_fraction_args
from harness.errors import ConfigError
from harness.matrix import expand
from harness.pipeline import check_shared_memory
from harness.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
H200 = {"index": 0, "name": "NVIDIA H200", "memory_total_gib": 140.4}
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_gib": 79.65}


def test_the_fraction_follows_the_gpu():
    assert memory_fraction_args("sglang", 8.4, 140.4) == ("--mem-fraction-static", "0.06")
    assert memory_fraction_args("sglang", 8.4, 79.65) == ("--mem-fraction-static", "0.105")
    assert memory_fraction_args("vllm", 8.4, 79.65) == ("--gpu-memory-utilization", "0.105")
    with pytest.raises(ValueError, match="at most 95%"):
        memory_fraction_args("sglang", 78, 79.65)


def _fixes_cells():
    suite = load_suite(ROOT / "suites" / "gpu-sglang-fixes.yaml")
    return expand(suite)


def test_the_fixes_stage_keeps_its_h200_fraction_and_grows_it_on_an_h100():
    cell = _fixes_cells()[0]
    assert cell.server.memory_gib == 8.4 and "--mem-fraction-static" not in cell.server.args
    on_h200 = sized_for(cell, gpu_memory_gib({"gpus": [H200]}, [0]))
    on_h100 = sized_for(cell, gpu_memory_gib({"gpus": [H100]}, [0]))
    assert on_h200.server.args[-2:] == ("--mem-fraction-static", "0.06")  # what the H200 runs measured with
    assert on_h100.server.args[-2:] == ("--mem-fraction-static", "0.105")
    assert on_h100.resolved()["server_args"][-1] == "0.105" and on_h100.resolved()["memory_gib"] == 8.4


def test_a_gpu_of_unknown_memory_cannot_be_sized_for():
    with pytest.raises(LaunchFailed, match="memory of the cell's GPUs is unknown"):
        sized_for(_fixes_cells()[0], gpu_memory_gib({"gpus": [H200]}, [1]))
    dry = sized_for(_fixes_cells()[0], None, dry_run=True)
    assert dry.server.args[-2:] == ("--mem-fraction-static", "<8.4 GiB / GPU memory>")


def test_eight_shared_cells_fit_an_80_gb_gpu_and_more_are_refused():
    cells = _fixes_cells()
    check_shared_memory(cells, [H100], 8)
    with pytest.raises(ConfigError, match="--share-gpus 10: 10 servers of server.memory_gib 8.4 take 84 GiB"):
        check_shared_memory(cells, [H100], 10)


@pytest.mark.parametrize("server, message", [
    ({"args": ["--mem-fraction-static", "0.1"], "memory_gib": 4}, "both size the server"),
    ({"memory_gib": 0}, "memory_gib"),
])
def test_a_bad_memory_gib_is_refused(base_suite, write_suite, server, message):
    base_suite["server"] = server
    with pytest.raises(ConfigError, match=message):
        load_suite(write_suite(base_suite))


def test_an_engine_without_a_fraction_refuses_memory_gib(base_suite, write_suite):
    base_suite.update(engine="transformers", server={"memory_gib": 4})
    with pytest.raises(ConfigError, match="takes no memory fraction"):
        load_suite(write_suite(base_suite))


def test_the_vllm_cpu_servers_compile_nothing_while_measured():
    """Issue 25 §4: vLLM compiles its prompt-logprobs helper with inductor on the eval's first requests; the
    build's subprocesses, forked from the 1.6 GiB worker, counted its pages twice in the process tree's RSS for
    as long as the fork had not exec'd yet, longer on a busy machine (4.50 GiB against 2.94 seen every 0.2 s)."""
    suite = load_suite(ROOT / "suites" / "local-numerics.yaml")
    assert {cell.server.env.get("TORCH_COMPILE_DISABLE") for cell in expand(suite)} == {"1"}
    assert all("--enforce-eager" in cell.server.args for cell in expand(suite))
