"""is_layer_skipped and Quark's should_ignore_layer on the cases of SGLang's own regression test
(test/registered/quant/test_is_layer_skipped.py, #23973) and on the quirks that decide what loads; the randomized
agreement with SGLang's real functions is tests/test_sglang_agreement.py."""

from __future__ import annotations

import pytest

from harness.loading.releases import BY_VERSION
from harness.loading.skip import (
    FALLBACK_FUSED_SHARDS,
    FALLBACK_FUSED_SHARDS_23467,
    ShardDisagreement,
    is_layer_skipped,
    module_path_match,
    should_ignore_layer,
)

OLD, NEW = BY_VERSION["0.5.17"], BY_VERSION["0.5.23"]

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
    assert not module_path_match("model.layers.34", "model.layers.340.mlp")


def test_fused_shards_that_disagree_are_an_error():
    with pytest.raises(ShardDisagreement, match="Detected some but not all shards of model.layers.1.self_attn.qkv_proj "
                                                "are quantized"):
        is_layer_skipped("model.layers.1.self_attn.qkv_proj", ["model.layers.1.self_attn.q_proj"], MAPPING)
    assert is_layer_skipped("model.layers.1.self_attn.qkv_proj", ["model.layers.1.self_attn."], MAPPING)


def test_sglang_quirks_are_kept():
    # A leading dot makes an entry match nothing (only trailing dots are dropped).
    assert not is_layer_skipped("model.layers.0.mlp.gate", [".mlp.gate"])
    # A prefix holding "experts" is skipped by any ignored entry it is a substring of.
    assert is_layer_skipped("model.layers.1.mlp.experts", ["language_model.model.layers.1.mlp.experts.0.w1"])
    # Both shards listed exactly skip a gate_up_proj that is not the module's last name.
    assert is_layer_skipped("model.layers.1.mlp.gate_up_proj.x",
                            ["model.layers.1.mlp.gate_proj.x", "model.layers.1.mlp.up_proj.x"])
    # str.replace changes every occurrence of the fused name in the path.
    assert is_layer_skipped("qkv_proj.layers.0.qkv_proj", ["q_proj.layers.0.q_proj", "k_proj.layers.0.k_proj",
                                                           "v_proj.layers.0.v_proj"])
    with pytest.raises(AssertionError):  # a fused name mapped to no shards fails SGLang's assert
        is_layer_skipped("model.layers.0.mlp.gate_up_proj", [], {"gate_up_proj": []})


@pytest.mark.parametrize("release", [OLD, NEW], ids=str)
def test_quark_exclude_names_and_regexes(release):
    exclude = ["lm_head", "re:model\\.layers\\.61\\..*", "re:.*mlp\\.gate$"]
    assert should_ignore_layer("lm_head", exclude, release=release)
    assert should_ignore_layer("model.layers.61.eh_proj", exclude, release=release)
    assert not should_ignore_layer("model.layers.6.eh_proj", exclude, release=release)  # re.match anchors at the start
    assert should_ignore_layer("model.layers.3.mlp.gate", exclude, release=release)
    assert not should_ignore_layer("model.layers.3.mlp.gate_up", exclude, release=release)
    assert not should_ignore_layer("language_model.lm_head.x", exclude, release=release)  # exact names are exact


@pytest.mark.parametrize("release", [OLD, NEW], ids=str)
def test_quark_fused_shards_must_agree(release):
    mapping = {"fused_qkv_a_proj_with_mqa": ["q_a_proj", "kv_a_proj_with_mqa"]}
    prefix = "language_model.model.layers.0.self_attn."
    fused = prefix + "fused_qkv_a_proj_with_mqa"
    assert should_ignore_layer(fused, [prefix + "q_a_proj", prefix + "kv_a_proj_with_mqa"], mapping, release=release)
    with pytest.raises(ShardDisagreement, match=r"Found different quantization schemes for \['q_a_proj', "
                                                r"'kv_a_proj_with_mqa'\] in language_model"):
        should_ignore_layer(fused, [prefix + "q_a_proj"], mapping, release=release)


def test_quark_0_5_23_matches_fused_names_and_experts_first():
    mapping = {"gate_up_proj": ["gate_proj", "up_proj"]}
    name = "model.layers.3.mlp.shared_experts.gate_up_proj"
    # Excluded under its fused name: 0.5.17 only looks at the shards.
    assert should_ignore_layer(name, [name], mapping, release=NEW)
    assert not should_ignore_layer(name, [name], mapping, release=OLD)
    # One expert named excludes the fused MoE module in 0.5.23 only.
    experts = "model.layers.3.mlp.experts"
    assert should_ignore_layer(experts, [experts + ".0.gate_proj"], mapping, release=NEW)
    assert not should_ignore_layer(experts, [experts + ".0.gate_proj"], mapping, release=OLD)
