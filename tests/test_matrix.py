"""Matrix expansion, cell ids, rules, and the server commands the dry-run prints."""

from __future__ import annotations

from harness.engines import get_engine
from harness.fixes import FIXES
from harness.matrix import expand, select
from harness.suite import load_suite
from tests.conftest import ROOT


def cells_of(path):
    return expand(load_suite(path))


def test_ids_are_stable_and_readable(base_suite, write_suite):
    ids = [c.id for c in cells_of(write_suite(base_suite))]
    assert ids == ["glm5/quark-mxfp4/none/tp4", "glm5/quark-mxfp4/none/tp8",
                   "glm5/quark-mxfp4/mtp/tp4", "glm5/quark-mxfp4/mtp/tp8"]


def test_ep_appears_in_the_id_only_when_set(base_suite, write_suite):
    base_suite["matrix"]["ep"] = [None, 4]
    base_suite["matrix"]["tp"] = [8]
    ids = [c.id for c in cells_of(write_suite(base_suite))]
    assert "glm5/quark-mxfp4/none/tp8" in ids and "glm5/quark-mxfp4/none/tp8-ep4" in ids


def test_exclude_then_include(base_suite, write_suite):
    base_suite["exclude"] = [{"spec": "mtp", "tp": 4}]
    base_suite["models"][0]["checkpoints"]["fp8"] = "zai-org/GLM-5-FP8"
    base_suite["include"] = [{"model": "glm5", "quant": "fp8", "spec": "none", "tp": 8}]
    ids = [c.id for c in cells_of(write_suite(base_suite))]
    assert "glm5/quark-mxfp4/mtp/tp4" not in ids
    assert ids[-1] == "glm5/fp8/none/tp8"
    assert len(ids) == 4


def test_server_settings_layer_suite_model_override(base_suite, write_suite):
    base_suite["server"] = {"args": ["--a"], "env": {"X": "suite", "Y": "suite"}}
    base_suite["models"][0]["server"] = {"args": ["--b"], "env": {"Y": "model"}}
    base_suite["overrides"] = [{"match": {"spec": "mtp"}, "server": {"args": ["--c"], "env": {"X": "mtp"}}}]
    cells = {c.id: c for c in cells_of(write_suite(base_suite))}
    plain, mtp = cells["glm5/quark-mxfp4/none/tp8"], cells["glm5/quark-mxfp4/mtp/tp8"]
    assert plain.server.args == ("--a", "--b") and plain.server.env == {"X": "suite", "Y": "model"}
    assert mtp.server.args == ("--a", "--b", "--c") and mtp.server.env == {"X": "mtp", "Y": "model"}


def test_model_axes_override_suite_axes(base_suite, write_suite):
    base_suite["models"][0]["matrix"] = {"tp": [8], "spec": ["mtp"]}
    assert [c.id for c in cells_of(write_suite(base_suite))] == ["glm5/quark-mxfp4/mtp/tp8"]


def test_eagle3_gets_the_3_1_4_chain_and_the_draft(base_suite, write_suite):
    base_suite["matrix"]["spec"] = ["eagle3"]
    base_suite["matrix"]["tp"] = [8]
    base_suite["models"][0]["draft"] = {"path": "drafts/eagle3-mla", "quantization": "unquant"}
    (cell,) = cells_of(write_suite(base_suite))
    command = get_engine("sglang").command(cell, python="python3", port=31000, devices=list(range(8)))
    argv = list(command.argv)
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    pairs = dict(zip(argv[3::1], argv[4::1]))
    assert pairs["--speculative-algorithm"] == "EAGLE3"
    assert pairs["--speculative-draft-model-path"] == "drafts/eagle3-mla"
    assert pairs["--speculative-draft-model-quantization"] == "unquant"
    assert (pairs["--speculative-num-steps"], pairs["--speculative-eagle-topk"],
            pairs["--speculative-num-draft-tokens"]) == ("3", "1", "4")
    assert command.env["HIP_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"


def test_glm5_mtp_command_is_the_launch_of_the_pr():
    cells = {c.id: c for c in cells_of(ROOT / "suites" / "glm5.yaml")}
    command = get_engine("sglang").command(cells["glm5/quark-mxfp4/mtp/tp8"], python="python3", port=1,
                                           devices=list(range(8)))
    text = command.display()
    for piece in ("--model-path amd/GLM-5-MXFP4", "--tp 8", "--trust-remote-code", "--chunked-prefill-size 131072",
                  "--disable-radix-cache", "--mem-fraction-static 0.85", "--watchdog-timeout 1200",
                  "--speculative-algorithm NEXTN", "--model-loader-extra-config '{\"enable_multithread_load\": true}'"):
        assert piece in text
    assert command.env["SGLANG_USE_AITER"] == "1"


def test_online_quant_adds_debug_logging_once():
    cells = {c.id: c for c in cells_of(ROOT / "suites" / "online-mxfp4.yaml")}
    argv = get_engine("sglang").command(cells["qwen3-8b/quark_mxfp4/none/tp1"], python="p", port=1,
                                        devices=[0]).argv
    assert argv.count("--log-level") == 1 and "--quantization" in argv
    assert argv[argv.index("--quantization") + 1] == "quark_mxfp4"


def test_vllm_command_uses_its_own_flags(base_suite, write_suite):
    base_suite["engine"] = "vllm"
    cells = {c.id: c for c in cells_of(write_suite(base_suite))}
    argv = get_engine("vllm").command(cells["glm5/quark-mxfp4/mtp/tp8"], python="p", port=9, devices=[0]).argv
    assert "--tensor-parallel-size" in argv and '{"method": "mtp"}' in argv


def test_shipped_suites_cover_every_fix():
    guarded = set()
    for path in sorted((ROOT / "suites").glob("*.yaml")):
        for cell in cells_of(path):
            if path.stem.startswith("local"):
                assert cell.fix is None, cell.id  # the embedded default guards the harness itself
                continue
            if path.stem.startswith("gpu-sglang") and cell.fix is None:
                continue  # the rig's own cells (tiny model, speculative plumbing) guard harness against SGLang
            assert cell.fix in FIXES, cell.id
            guarded.add(cell.fix)
    # Every fix has cells that re-run its validation; a guard (a loader failure class a preflight rule predicts,
    # no fix of its own to validate) may have rig cells that reproduce it.
    assert {fix.id for fix in FIXES.values() if fix.kind == "fix"} <= guarded <= set(FIXES)


def test_select_by_glob(base_suite, write_suite):
    cells = cells_of(write_suite(base_suite))
    assert [c.id for c in select(cells, ["*/mtp/*"])] == ["glm5/quark-mxfp4/mtp/tp4", "glm5/quark-mxfp4/mtp/tp8"]
    assert select(cells, None) == cells


def test_resolved_config_names_fix_and_protocol(base_suite, write_suite):
    resolved = cells_of(write_suite(base_suite))[0].resolved()
    assert resolved["fix"] == {"id": "glm5-mxfp4-mtp", "pr": "#23219"}
    assert resolved["evals"]["gsm8k"]["shots"] == 5 and resolved["evals"]["gsm8k"]["questions"] == 200
    assert resolved["model_path"] == "amd/GLM-5-MXFP4" and resolved["trust_remote_code"] is True


def test_transformers_on_a_cpu_bounds_onednn_kernel_caches_and_the_suite_env_wins():
    from dataclasses import replace

    from harness.engines.transformers import CPU_BOUNDED_CACHES

    cell = next(c for c in cells_of(ROOT / "suites" / "local.yaml") if c.id == "tiny-qwen3/bf16/none/tp1")
    engine = get_engine("transformers")

    def env_on(vendor: str, env: dict[str, str]) -> dict[str, str]:
        placed = replace(cell, hardware=replace(cell.hardware, vendor=vendor), server=replace(cell.server, env=env))
        return engine.command(placed, python="p", port=1, devices=[0]).env

    assert env_on("cpu", {}) == {**CPU_BOUNDED_CACHES, "CUDA_VISIBLE_DEVICES": ""}
    assert env_on("cpu", {"LRU_CACHE_CAPACITY": "1024"})["LRU_CACHE_CAPACITY"] == "1024"
    assert not set(CPU_BOUNDED_CACHES) & set(env_on("nvidia", {}))
