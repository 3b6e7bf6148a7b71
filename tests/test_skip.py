"""is_layer_skipped against every case of SGLang's test/registered/quant/test_is_layer_skipped.py (#23973)."""

from __future__ import annotations

import pytest

from harness.loading.skip import (
    FALLBACK_FUSED_SHARDS,
    FALLBACK_FUSED_SHARDS_23467,
    ShardDisagreement,
    is_layer_skipped,
    matches,
)

MAPPING = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
# Qwen3-Next FP8 lists its unified linear-attention tensors in both forms.
IGNORED = [f"{root}layers.{i}.linear_attn.{name}" for root in ("", "model.") for i in (0, 5)
           for name in ("in_proj_ba", "in_proj_qkvz")]


@pytest.mark.parametrize("prefix", ["model.layers.0.linear_attn.in_proj_ba", "model.layers.5.linear_attn.in_proj_qkvz"])
def test_unified_linear_attention_tensors_are_skipped(prefix):
    assert is_layer_skipped(prefix, IGNORED, MAPPING)
    assert is_layer_skipped(prefix, IGNORED, FALLBACK_FUSED_SHARDS)  # the fixed fallback, no mapping given


@pytest.mark.parametrize("prefix", ["model.layers.0.linear_attn.in_proj_ba", "model.layers.5.linear_attn.in_proj_qkvz"])
def test_the_23467_fallback_explodes_them_and_misses_the_skip(prefix):
    # The regression: shards in_proj_b / in_proj_a do not exist, so nothing matches and the layer is quantized.
    assert not is_layer_skipped(prefix, IGNORED, FALLBACK_FUSED_SHARDS_23467)


def test_gate_does_not_match_gate_up_proj():
    assert not is_layer_skipped("model.layers.0.mlp.gate_up_proj", ["mlp.gate"], MAPPING)
    assert is_layer_skipped("model.layers.0.mlp.gate", ["mlp.gate"], MAPPING)


def test_trailing_dot_prefix_respects_the_boundary():
    assert is_layer_skipped("model.layers.34.mlp.down_proj", ["model.layers.34."], MAPPING)
    assert not is_layer_skipped("model.layers.340.mlp.down_proj", ["model.layers.34."], MAPPING)
    assert not matches("model.layers.340.mlp", "model.layers.34")


def test_fused_shards_that_disagree_are_an_error():
    with pytest.raises(ShardDisagreement, match="q_proj=skipped, k_proj=quantized, v_proj=quantized"):
        is_layer_skipped("model.layers.1.self_attn.qkv_proj", ["model.layers.1.self_attn.q_proj"], MAPPING)
    assert is_layer_skipped("model.layers.1.self_attn.qkv_proj", ["model.layers.1.self_attn."], MAPPING)


def test_quark_exclude_names_and_regexes():
    from harness.loading.skip import quark_excluded

    exclude = ["lm_head", "re:model\\.layers\\.61\\..*", "re:.*mlp\\.gate$"]
    assert quark_excluded("lm_head", exclude)
    assert quark_excluded("model.layers.61.eh_proj", exclude)
    assert not quark_excluded("model.layers.6.eh_proj", exclude)  # re.match anchors at the start only
    assert quark_excluded("model.layers.3.mlp.gate", exclude) and not quark_excluded("model.layers.3.mlp.gate_up", exclude)
    assert not quark_excluded("language_model.lm_head.x", exclude)  # exact names are exact


def test_quark_fused_shards_must_agree():
    from harness.loading.skip import quark_excluded

    mapping = {"fused_qkv_a_proj_with_mqa": ("q_a_proj", "kv_a_proj_with_mqa")}
    prefix = "language_model.model.layers.0.self_attn."
    assert quark_excluded(prefix + "fused_qkv_a_proj_with_mqa", [prefix + "q_a_proj", prefix + "kv_a_proj_with_mqa"],
                          mapping)
    with pytest.raises(ShardDisagreement, match="q_a_proj=excluded, kv_a_proj_with_mqa=quantized"):
        quark_excluded(prefix + "fused_qkv_a_proj_with_mqa", [prefix + "q_a_proj"], mapping)
