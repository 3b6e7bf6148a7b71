"""online-mxfp4 (#18005): which layers online MXFP4 quantizes and the weight memory it predicts, checked
against the figures SGLang's own test measured (Qwen3-8B and Qwen3-30B-A3B, BF16 and online MXFP4)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from harness.loading import online
from harness.loading.launch import Launch
from harness.loading.manifest import load_manifest
from harness.loading.rules import Outcome, online_mxfp4
from harness.preflight import check_checkpoint, compare_with_prediction, locate
from tests import checkpoints


@pytest.fixture(scope="module")
def qwen3_8b(tmp_path_factory):
    return load_manifest(checkpoints.qwen3(tmp_path_factory.mktemp("q8") / "ckpt"))


@pytest.fixture(scope="module")
def qwen3_30b_a3b(tmp_path_factory):
    return load_manifest(checkpoints.qwen3_30b_a3b(tmp_path_factory.mktemp("q30") / "ckpt"))


def test_bf16_prediction_matches_sglangs_measured_references(qwen3_8b, qwen3_30b_a3b):
    # test_quark_mxfp4.py's BF16 references (peak before load + increase during load_weights): 15.268, 56.940 GiB.
    assert online.predict_weight_memory(qwen3_8b, 1).bf16_gib == pytest.approx(15.268, rel=0.005)
    assert online.predict_weight_memory(qwen3_30b_a3b, 1).bf16_gib == pytest.approx(56.940, rel=0.005)


def test_online_prediction_is_under_the_bounds_sglang_asserts(qwen3_8b, qwen3_30b_a3b):
    dense, moe = online.predict_weight_memory(qwen3_8b, 1), online.predict_weight_memory(qwen3_30b_a3b, 1)
    assert 5.0 < dense.online_mxfp4_gib < 6.0  # SGLang: < 6 GiB
    assert 15.0 < moe.online_mxfp4_gib < 17.0  # SGLang: < 17 GiB
    assert dense.kept_layers == ("embed_tokens", "lm_head")
    assert moe.kept_layers == ("embed_tokens", "gate", "lm_head")  # the router stays BF16
    assert dense.online_mxfp4_load_peak_gib > dense.online_mxfp4_gib  # one BF16 shard on the device while quantized


def test_tp_splits_weights_and_replicates_the_router(qwen3_30b_a3b):
    one, eight = online.predict_weight_memory(qwen3_30b_a3b, 1), online.predict_weight_memory(qwen3_30b_a3b, 8)
    router_gib = 48 * 128 * 2048 * 2 / 2**30
    assert eight.bf16_gib == pytest.approx((one.bf16_gib - router_gib) / 8 + router_gib, rel=0.01)


def test_prequantized_prediction_is_the_checkpoint_as_stored(tmp_path, qwen3_8b):
    stored = load_manifest(checkpoints.qwen3(tmp_path / "mxfp4", mxfp4=True))
    prediction = online.predict_weight_memory(stored, 1)
    # The same layers quantized the same way: the export's bytes equal the online scheme's.
    assert prediction.prequantized_mxfp4_gib == pytest.approx(online.predict_weight_memory(qwen3_8b, 1).online_mxfp4_gib)
    assert prediction.bf16_gib == pytest.approx(15.256, abs=1e-3)  # packed FP4 read as its logical shape


def test_rule_passes_a_bf16_source_and_names_what_it_quantizes(qwen3_8b):
    result = online_mxfp4(qwen3_8b, Launch(tp=1, quantization="quark_mxfp4"))
    assert result.outcome is Outcome.PASS and result.fix == "online-mxfp4" and result.pr == "#18005"
    assert "quantizes 252 linears" in result.reason and "keeps embed_tokens, lm_head in BF16" in result.reason
    assert online_mxfp4(qwen3_8b, Launch(tp=1, quantization=None)).outcome is Outcome.NOT_APPLICABLE


def test_rule_fails_online_quantization_of_an_mxfp4_checkpoint(tmp_path):
    stored = load_manifest(checkpoints.qwen3(tmp_path / "mxfp4", mxfp4=True))
    result = online_mxfp4(stored, Launch(tp=1, quantization="quark_mxfp4"))
    assert result.outcome is Outcome.FAIL and "MXFP4 already (quant_method quark)" in result.reason


def test_rule_fails_a_partition_that_is_not_whole_mxfp4_blocks(tmp_path):
    manifest = load_manifest(checkpoints.qwen3_30b_a3b(tmp_path / "q", layers=2, experts=4))
    assert online_mxfp4(manifest, Launch(tp=8, quantization="quark_mxfp4")).outcome is Outcome.PASS  # 768 / 8 = 96 = 3 x 32
    result = online_mxfp4(manifest, Launch(tp=32, quantization="quark_mxfp4"))  # 768 / 32 = 24
    assert result.outcome is Outcome.FAIL
    assert "down_proj: input_size_per_partition = 24 at tp 32 is not a multiple of the MXFP4 block 32" in result.reason


def test_measured_load_memory_against_the_prediction(qwen3_8b):
    prediction = online.predict_weight_memory(qwen3_8b, 1)
    close = compare_with_prediction(prediction, "bf16", {"load_peak_gib": 15.268, "weights_gib": 15.3})
    assert close["metric"] == "memory.load_peak_gib" and close["within_tolerance"]
    far = compare_with_prediction(prediction, "quark_mxfp4", {"weights_gib": 15.268})  # not quantized after all
    assert far["predicted_gib"] == pytest.approx(5.755, abs=1e-3) and not far["within_tolerance"]
    assert compare_with_prediction(prediction, "bf16", {"host_rss_peak_gib": 1.0}) is None  # not a device figure


def test_locate_finds_the_hub_cache_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # conftest's: no test reads the hub (none does here: no token)
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-8B"
    checkpoints.qwen3(repo / "snapshots" / "abc123", layers=1, shards=1)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert locate("Qwen/Qwen3-8B").local == repo / "snapshots" / "abc123"
    missing = locate("Qwen/Qwen3-30B-A3B")
    assert missing.local is None and "set HF_TOKEN" in missing.unavailable
    assert locate("Qwen/Qwen3-30B-A3B", token="hf_x").hub_id == "Qwen/Qwen3-30B-A3B"


def test_hub_checkpoint_headers_through_huggingface_hub(tmp_path, monkeypatch):
    """A hub id with a token: config.json and shard headers through huggingface_hub (a stand-in here)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
                                  "num_key_value_heads": 8}))
    seen = {}

    class TensorInfo:
        def __init__(self, dtype, shape):
            self.dtype, self.shape = dtype, shape

    class FakeApi:
        def get_safetensors_metadata(self, repo_id, revision=None, token=None):
            seen["token"] = token
            shard = types.SimpleNamespace(tensors={"model.layers.0.mlp.down_proj.weight": TensorInfo("BF16", [64, 48]),
                                                   "lm_head.weight": TensorInfo("BF16", [100, 64])})
            return types.SimpleNamespace(files_metadata={"model.safetensors": shard})

    fake = types.ModuleType("huggingface_hub")
    fake.HfApi = FakeApi
    fake.hf_hub_download = lambda repo_id, filename, revision=None, token=None: str(config)
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the hub here is the stand-in above
    check = check_checkpoint("hub", "org/model", Launch(tp=1, quantization="quark_mxfp4"), token="hf_secret")
    assert seen["token"] == "hf_secret" and check.checkpoint == "org/model"
    failed = {r.fix: r for r in check.failures}
    assert "down_proj: input_size_per_partition = 48 at tp 1 is not a multiple of" in failed["online-mxfp4"].reason


def test_manifest_facts_name_what_the_rules_read(tmp_path, qwen3_30b_a3b):
    facts = qwen3_30b_a3b.facts()
    assert facts["architecture"] == "Qwen3MoeForCausalLM" and facts["num_experts"] == 128
    assert facts["moe_intermediate_size"] == 768 and "quantization" not in facts
    quark = load_manifest(checkpoints.qwen3(tmp_path / "mxfp4", layers=1, mxfp4=True, shards=1)).facts()
    assert quark["quantization"] == {"method": "quark", "weight_block_size": None, "ignored": 2,
                                     "specs": ["global_quant_config"]}
    mla = load_manifest(checkpoints.eagle3_mla_draft(tmp_path / "draft")).facts()
    assert mla["q_lora_rank"] == 64 and "kv_lora_rank" in mla
