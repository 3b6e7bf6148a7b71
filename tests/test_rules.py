"""Preflight rules on tiny synthetic checkpoints: each must flag the bug and pass the fix."""

from __future__ import annotations

import pytest

from harness.loading.manifest import load_manifest
from harness.loading.rules import (
    Outcome,
    eagle3_mla_draft,
    fp8_block_partitions,
    glm5_mtp_eh_proj,
    kimi_quark_prefix,
)
from harness.loading.skip import FALLBACK_FUSED_SHARDS_23467
from tests import checkpoints
from tests.checkpoints import qwen3_next_fp8, write_checkpoint


def test_manifest_reads_headers_only(tmp_path):
    manifest = load_manifest(qwen3_next_fp8(tmp_path / "q"))
    assert manifest.architecture == "Qwen3NextForCausalLM" and manifest.quant.block == (128, 128)
    assert manifest.tensors["model.layers.0.linear_attn.in_proj_ba.weight"].shape == (32, 512)
    assert len(manifest.quant.ignored) == 8


def test_sharded_checkpoints_are_read_through_the_index(tmp_path):
    tensors = {f"model.layers.{i}.mlp.down_proj.weight": ("BF16", (64, 64)) for i in range(6)}
    manifest = load_manifest(write_checkpoint(tmp_path / "s", {"architectures": ["X"]}, tensors, shards=3))
    assert sorted(manifest.tensors) == sorted(tensors) and manifest.quant is None


def test_qwen3_next_at_tp4_passes_with_the_fixed_loader(tmp_path):
    result = fp8_block_partitions(load_manifest(qwen3_next_fp8(tmp_path / "q")), tp=4)
    assert result.outcome is Outcome.PASS and result.fix == "qwen3-next-fp8-skip"


def test_qwen3_next_at_tp4_fails_as_sglang_did_with_the_23467_fallback(tmp_path):
    result = fp8_block_partitions(load_manifest(qwen3_next_fp8(tmp_path / "q")), tp=4,
                                  fused_mapping=FALLBACK_FUSED_SHARDS_23467)
    assert result.outcome is Outcome.FAIL
    assert result.reason.startswith("model.layers.0.linear_attn.in_proj_ba: Weight output_partition_size = 8 is not "
                                    "divisible by weight quantization block_n = 128 at tp 4")


def test_a_quantized_layer_too_small_for_the_tp_fails_whatever_the_loader(tmp_path):
    manifest = load_manifest(qwen3_next_fp8(tmp_path / "q"))
    result = fp8_block_partitions(manifest, tp=16)  # out_proj input 512 / 16 = 32 < 128
    assert result.outcome is Outcome.FAIL and result.reason.startswith(
        "model.layers.0.linear_attn.out_proj: Weight input_size_per_partition = 32 is not divisible by weight "
        "quantization block_k = 128 at tp 16")


def test_not_applicable_without_fp8_blocks(tmp_path):
    manifest = load_manifest(write_checkpoint(tmp_path / "b", {"architectures": ["X"]}, {"w.weight": ("BF16", (4, 4))}))
    assert fp8_block_partitions(manifest, tp=4).outcome is Outcome.NOT_APPLICABLE


def test_preflight_command(tmp_path, capsys):
    from harness.cli import main

    path = qwen3_next_fp8(tmp_path / "q")
    assert main(["preflight", "--checkpoint", str(path), "--tp", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}  ({path})\n") and "\n  PASS            qwen3-next-fp8-skip (#23973): " in out
    assert "  NOT_APPLICABLE  online-mxfp4 (#18005)" in out and "predicted weights per rank at tp 4" in out
    assert main(["preflight", "--checkpoint", str(path), "--tp", "16", "--json"]) == 1
    assert '"outcome": "FAIL"' in capsys.readouterr().out
    assert main(["preflight", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "--checkpoint: " in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["preflight", "--checkpoint", str(tmp_path / "empty")]) == 2
    assert "no config.json" in capsys.readouterr().err


@pytest.mark.parametrize(("excluded", "packed", "outcome", "text"), [
    (False, True, Outcome.PASS, "is quantized, so eh_proj is a quantized ReplicatedLinear"),
    (True, False, Outcome.PASS, "excluded from quantization"),
    (True, True, Outcome.FAIL, "checkpoint [64, 64] (U8) vs model [64, 128]"),
    (False, False, Outcome.FAIL, "checkpoint [64, 128] (BF16) vs model [64, 64]"),
])
def test_glm5_mtp_eh_proj(tmp_path, excluded, packed, outcome, text):
    manifest = load_manifest(checkpoints.glm5_mxfp4(tmp_path / "g", mtp_excluded=excluded, eh_proj_packed=packed))
    result = glm5_mtp_eh_proj(manifest, tp=8)
    assert result.outcome is outcome and text in result.reason and result.pr == "#23219"


def test_glm5_rule_is_not_applicable_elsewhere(tmp_path):
    assert glm5_mtp_eh_proj(load_manifest(qwen3_next_fp8(tmp_path / "q")), tp=4).outcome is Outcome.NOT_APPLICABLE


@pytest.mark.parametrize(("kwargs", "outcome", "text"), [
    ({}, Outcome.PASS, "reads 2 x 128"),
    ({"model_type": "deepseek_v3"}, Outcome.PASS, "reads 2 x 128"),
    ({"architecture": "LlamaForCausalLMEagle3"}, Outcome.FAIL, "not Eagle3DeepseekV2ForCausalLM"),
    ({"q_lora_rank": None}, Outcome.FAIL, "q_lora_rank is missing"),
    ({"input_width": 128}, Outcome.FAIL, "expects [112, 256]"),
    ({"model_type": "llama"}, Outcome.FAIL, "no DeepseekV3Config alias"),
])
def test_eagle3_mla_draft(tmp_path, kwargs, outcome, text):
    result = eagle3_mla_draft(load_manifest(checkpoints.eagle3_mla_draft(tmp_path / "d", **kwargs)))
    assert result.outcome is outcome and text in result.reason


def test_preflight_with_a_draft(tmp_path, capsys):
    from harness.cli import main

    target = checkpoints.glm5_mxfp4(tmp_path / "g", mtp_excluded=False, eh_proj_packed=True)
    draft = checkpoints.eagle3_mla_draft(tmp_path / "d", q_lora_rank=None)
    assert main(["preflight", "--checkpoint", str(target), "--tp", "8", "--spec", "eagle3", "--draft", str(draft)]) == 1
    out = capsys.readouterr().out
    assert "PASS            glm5-mxfp4-mtp (#23219)" in out and "FAIL            kimi-k25-eagle3-mla" in out
    assert main(["preflight", "--checkpoint", str(target), "--spec", "eagle3"]) == 2
    assert "--spec eagle3 needs --draft PATH" in capsys.readouterr().err


KIMI_EXCLUDE = ["re:.*lm_head", "re:language_model\\.model\\.layers\\.\\d+\\.self_attn\\.(q_a_proj|kv_a_proj_with_mqa)"]


def test_kimi_prefix_fixed_checkpoint_passes(tmp_path):
    result = kimi_quark_prefix(load_manifest(checkpoints.kimi_k26_mxfp4(tmp_path / "k", exclude=KIMI_EXCLUDE)), tp=4)
    assert result.outcome is Outcome.PASS and "2 fused modules consistent" in result.reason


def test_kimi_exclude_without_the_language_model_prefix_names_nothing(tmp_path):
    exclude = ["re:.*lm_head", "model.layers.0.self_attn.q_a_proj"]  # as a loader without the prefix names it
    result = kimi_quark_prefix(load_manifest(checkpoints.kimi_k26_mxfp4(tmp_path / "k", exclude=exclude)), tp=4)
    assert result.outcome is Outcome.FAIL and "'model.layers.0.self_attn.q_a_proj' names no module" in result.reason


def test_kimi_fused_shards_excluded_apart_fail(tmp_path):
    exclude = ["re:.*lm_head", "re:language_model\\.model\\.layers\\.\\d+\\.self_attn\\.q_a_proj"]
    result = kimi_quark_prefix(load_manifest(checkpoints.kimi_k26_mxfp4(tmp_path / "k", exclude=exclude)), tp=4)
    assert result.outcome is Outcome.FAIL
    assert "fused_qkv_a_proj_with_mqa: shards disagree on being excluded: q_a_proj=excluded, " \
           "kv_a_proj_with_mqa=quantized" in result.reason


def test_kimi_shards_stored_unlike_their_exclusion_fail(tmp_path):
    manifest = load_manifest(checkpoints.kimi_k26_mxfp4(tmp_path / "k", exclude=KIMI_EXCLUDE, kv_a_packed=True))
    result = kimi_quark_prefix(manifest, tp=4)
    assert result.outcome is Outcome.FAIL and "excluded by the config but its shards are stored as" in result.reason


def test_kimi_rule_not_applicable_without_a_wrapper(tmp_path):
    manifest = load_manifest(checkpoints.glm5_mxfp4(tmp_path / "g", mtp_excluded=False, eh_proj_packed=True))
    assert kimi_quark_prefix(manifest, tp=8).outcome is Outcome.NOT_APPLICABLE
