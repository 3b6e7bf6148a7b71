"""Preflight rules on header-only checkpoints: each FAILs its broken checkpoints, with SGLang's own message, and
PASSes the healthy ones (realistic shapes, TP 1 and TP 4, generic exclude patterns), for both known releases."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.loading.launch import Launch
from harness.loading.manifest import load_manifest
from harness.loading.releases import BY_VERSION, KNOWN_RELEASES
from harness.loading.rules import (
    RULES,
    Outcome,
    eagle3_mla_draft,
    fp8_block_partitions,
    glm5_mtp_eh_proj,
    kimi_quark_prefix,
    quark_fp8_shared_experts,
)
from tests import checkpoints
from tests.checkpoints import FP8_SPEC, deepseek_quark, qwen3_next_fp8, write_checkpoint

OLD, NEW = BY_VERSION["0.5.17"], BY_VERSION["0.5.23"]
RELEASES = pytest.mark.parametrize("release", KNOWN_RELEASES, ids=str)
AMD = {"vendor": "amd", "gpu_arch": ("gfx942", "gfx950"), "env": {"SGLANG_USE_AITER": "1"}}


def test_manifest_reads_headers_only(tmp_path):
    manifest = load_manifest(qwen3_next_fp8(tmp_path / "q"))
    assert manifest.architecture == "Qwen3NextForCausalLM" and manifest.quant.block == (128, 128)
    assert manifest.tensors["model.layers.0.linear_attn.in_proj_ba.weight"].shape == (64, 2048)


def test_sharded_checkpoints_are_read_through_the_index(tmp_path):
    tensors = {f"model.layers.{i}.mlp.down_proj.weight": ("BF16", (64, 64)) for i in range(6)}
    manifest = load_manifest(write_checkpoint(tmp_path / "s", {"architectures": ["X"]}, tensors, shards=3))
    assert sorted(manifest.tensors) == sorted(tensors) and manifest.quant is None


# ------------------------------------------------------------------------------------ qwen3-next-fp8-skip
@RELEASES
@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("device", [{}, AMD], ids=["cuda", "rocm-aiter"])
def test_qwen3_next_fp8_passes_at_tp_1_2_4(tmp_path, release, tp, device):
    """Realistic Qwen3-Next FP8: experts and shared expert of 512 are whole 128-blocks up to TP 4."""
    result = fp8_block_partitions(load_manifest(qwen3_next_fp8(tmp_path / "q")), Launch(tp=tp, release=release,
                                                                                        **device))
    assert result.outcome is Outcome.PASS and result.fix == "qwen3-next-fp8-skip"
    assert "kept unquantized" in result.reason


@RELEASES
@pytest.mark.parametrize("tp", [1, 4])
def test_qwen3_next_without_the_skip_fails_as_23973_did(tmp_path, release, tp):
    """in_proj_ba is a merged [32, 32] layer: quantized, its partitions are checked at any TP."""
    manifest = load_manifest(qwen3_next_fp8(tmp_path / "q", skip_linear_attention=False))
    result = fp8_block_partitions(manifest, Launch(tp=tp, release=release))
    assert result.outcome is Outcome.FAIL
    assert result.reason.startswith(f"model.layers.0.linear_attn.in_proj_ba: Weight output_partition_size = "
                                    f"{32 // tp} is not divisible by weight quantization block_n = 128.")


def test_moe_check_is_the_moe_method_s_own_and_aiter_skips_it(tmp_path):
    manifest = load_manifest(qwen3_next_fp8(tmp_path / "q", moe_intermediate=768))  # 768 / 4 = 192
    result = fp8_block_partitions(manifest, Launch(tp=4, release=NEW, vendor="nvidia"))
    assert result.outcome is Outcome.FAIL and result.reason.startswith(
        "model.layers.0.mlp.experts: The output_size of gate's and up's weight = 192 is not divisible by weight "
        "quantization block_n = 128.")
    assert fp8_block_partitions(manifest, Launch(tp=4, release=NEW, **AMD)).outcome is Outcome.PASS
    # EP 2 leaves the experts a MoE TP of 2: 768 / 2 = 384 whole blocks.
    assert fp8_block_partitions(manifest, Launch(tp=4, ep=2, release=NEW, vendor="nvidia")).outcome is Outcome.PASS


@RELEASES
def test_single_output_linears_narrower_than_a_block_pass_at_tp1(tmp_path, release):
    """A column layer 96 wide is never checked at TP 1 (SGLang checks output partitions only where TP splits the
    layer or it merges several outputs); at TP 2 its 48-wide partitions fail."""
    manifest = load_manifest(checkpoints.small_mla_fp8(tmp_path / "m"))
    assert fp8_block_partitions(manifest, Launch(tp=1, release=release)).outcome is Outcome.PASS
    result = fp8_block_partitions(manifest, Launch(tp=2, release=release))
    assert result.outcome is Outcome.FAIL and "_partition = 48 is not divisible" in result.reason


def test_quantized_layer_too_small_for_the_tp_fails(tmp_path):
    result = fp8_block_partitions(load_manifest(qwen3_next_fp8(tmp_path / "q")), Launch(tp=8, release=NEW, **AMD))
    assert result.outcome is Outcome.FAIL  # the shared expert's merged gate_up: 512 / 8 = 64
    assert "shared_expert.gate_up_proj: Weight output_partition_size = 64" in result.reason


def test_not_applicable_without_fp8_blocks(tmp_path):
    manifest = load_manifest(write_checkpoint(tmp_path / "b", {"architectures": ["X"]}, {"w.weight": ("BF16", (4, 4))}))
    assert fp8_block_partitions(manifest, Launch(tp=4)).outcome is Outcome.NOT_APPLICABLE


@pytest.mark.process
def test_preflight_command(tmp_path, capsys):
    from harness.cli import main

    path = qwen3_next_fp8(tmp_path / "q")
    assert main(["preflight", "--checkpoint", str(path), "--tp", "4", "--engine-version", "0.5.17"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}  ({path})  [SGLang 0.5.17 loader]\n")
    assert "\n  PASS            qwen3-next-fp8-skip (#23973): " in out
    assert "  NOT_APPLICABLE  online-mxfp4 (#18005)" in out and "predicted weights per rank at tp 4" in out
    assert main(["preflight", "--checkpoint", str(path), "--tp", "8", "--vendor", "nvidia", "--json"]) == 1
    assert '"outcome": "FAIL"' in capsys.readouterr().out
    assert main(["preflight", "--checkpoint", str(path), "--engine-version", "0.5.20"]) == 0
    assert "[SGLang 0.5.17 loader (engine 0.5.20: the nearest known release at or below it)]" in capsys.readouterr().out
    assert main(["preflight", "--checkpoint", str(path), "--engine-version", "next"]) == 2
    assert "engine version 'next': not a version" in capsys.readouterr().err
    assert main(["preflight", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "--checkpoint: " in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["preflight", "--checkpoint", str(tmp_path / "empty")]) == 2
    assert "no config.json" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- kimi-k26-quark-prefix
KIMI_EXCLUDE = ["re:.*lm_head", r"re:language_model\.model\.layers\.\d+\.self_attn\.(q_a_proj|kv_a_proj_with_mqa)",
                "re:.*vision_tower.*", "re:.*mm_projector.*"]
TEXT_ONLY_EXCLUDE = ["re:.*lm_head", r"re:.*self_attn\.(q_a_proj|kv_a_proj_with_mqa)$", "re:.*vision_tower.*",
                     "re:.*mm_projector.*", "re:.*mlp\\.gate$"]


@RELEASES
def test_kimi_wrapper_export_passes(tmp_path, release):
    """KimiK25 with Kimi's 384 routed experts (the shared expert is fused into them), MLA a-projections kept BF16
    by a prefixed regex; vision patterns name nothing in a text-only export and are a note, not a failure."""
    path = deepseek_quark(tmp_path / "k", exclude=KIMI_EXCLUDE, wrapper=True, n_routed_experts=384, layers=2)
    result = kimi_quark_prefix(load_manifest(path), Launch(tp=4, release=release, **AMD))
    assert result.outcome is Outcome.PASS, result.reason
    assert "under 'language_model.'" in result.reason and "2 exclude entries name no module here (harmless)" in result.reason


@RELEASES
def test_text_only_export_with_generic_patterns_passes(tmp_path, release):
    path = deepseek_quark(tmp_path / "t", exclude=TEXT_ONLY_EXCLUDE, n_routed_experts=8)
    result = kimi_quark_prefix(load_manifest(path), Launch(tp=4, release=release))
    assert result.outcome is Outcome.PASS, result.reason
    assert "with no prefix" in result.reason


@RELEASES
def test_exclude_entries_without_the_loader_prefix_build_bf16_layers_packed(tmp_path, release):
    """The failure #23408 fixed, as the loader names it now: an exclude written for `model.layers...` never
    matches `language_model.model.layers...`, so the BF16 a-projections would load into packed MXFP4 layers."""
    exclude = ["re:.*lm_head", r"re:model\.layers\.\d+\.self_attn\.(q_a_proj|kv_a_proj_with_mqa)"]
    path = deepseek_quark(tmp_path / "k", exclude=exclude, wrapper=True, n_routed_experts=384, layers=2)
    result = kimi_quark_prefix(load_manifest(path), Launch(tp=4, release=release))
    assert result.outcome is Outcome.FAIL
    assert result.reason.startswith(
        "language_model.model.layers.0.self_attn.fused_qkv_a_proj_with_mqa: SGLang builds it packed MXFP4 uint8 "
        "[out, in/2], quantized (mxfp4), but the checkpoint stores language_model.model.layers.0.self_attn.q_a_proj"
        ".weight as BF16 [64, 128] (and 1 more): its weight loader fails on the shape")


@RELEASES
def test_fused_shards_excluded_apart_raise_as_sglang_does(tmp_path, release):
    exclude = ["re:.*lm_head", r"re:language_model\.model\.layers\.\d+\.self_attn\.q_a_proj"]
    path = deepseek_quark(tmp_path / "k", exclude=exclude, wrapper=True, n_routed_experts=384, layers=2)
    result = kimi_quark_prefix(load_manifest(path), Launch(tp=4, release=release))
    assert result.outcome is Outcome.FAIL and result.reason == (
        "language_model.model.layers.0.self_attn.fused_qkv_a_proj_with_mqa: Found different quantization schemes "
        "for ['q_a_proj', 'kv_a_proj_with_mqa'] in language_model.model.layers.0.self_attn.fused_qkv_a_proj_with_mqa"
        f". SGLang requires all to use the same scheme. ({release})")


@RELEASES
def test_excluded_but_stored_packed_fails(tmp_path, release):
    path = deepseek_quark(tmp_path / "k", exclude=KIMI_EXCLUDE, wrapper=True, n_routed_experts=384, layers=2,
                          forms={"kv_a_proj_with_mqa": "mxfp4"})
    result = kimi_quark_prefix(load_manifest(path), Launch(tp=4, release=release))
    assert result.outcome is Outcome.FAIL and "builds it unpacked [out, in], excluded" in result.reason
    assert "kv_a_proj_with_mqa.weight as U8 [48, 64]" in result.reason


def test_a_fused_module_excluded_by_its_own_name_loads_only_on_0_5_23(tmp_path):
    """0.5.23's should_ignore_layer matches the fused name first; 0.5.17 asks only about the shards."""
    exclude = ["re:.*lm_head", r"re:.*fused_qkv_a_proj_with_mqa"]
    manifest = load_manifest(deepseek_quark(tmp_path / "t", exclude=exclude, n_routed_experts=8))
    assert kimi_quark_prefix(manifest, Launch(tp=4, release=NEW)).outcome is Outcome.PASS
    result = kimi_quark_prefix(manifest, Launch(tp=4, release=OLD))
    assert result.outcome is Outcome.FAIL and "packed MXFP4" in result.reason and "(SGLang 0.5.17)" in result.reason


def test_experts_and_shared_experts_checked_where_built(tmp_path):
    """8 routed experts: the shared expert is its own MLP. Stored BF16 while quantized, it fails; excluded with
    a pattern, it passes."""
    broken = deepseek_quark(tmp_path / "b", exclude=TEXT_ONLY_EXCLUDE, forms={"shared_experts": "bf16"})
    result = kimi_quark_prefix(load_manifest(broken), Launch(tp=4, release=NEW))
    assert result.outcome is Outcome.FAIL and result.reason.startswith("model.layers.1.mlp.shared_experts.gate_up_proj")
    healthy = deepseek_quark(tmp_path / "h", exclude=[*TEXT_ONLY_EXCLUDE, "re:.*shared_experts.*"],
                             forms={"shared_experts": "bf16"})
    assert kimi_quark_prefix(load_manifest(healthy), Launch(tp=4, release=NEW)).outcome is Outcome.PASS
    experts = deepseek_quark(tmp_path / "e", exclude=TEXT_ONLY_EXCLUDE, forms={"experts": "bf16"})
    result = kimi_quark_prefix(load_manifest(experts), Launch(tp=4, release=NEW))
    assert result.outcome is Outcome.FAIL and result.reason.startswith("model.layers.1.mlp.experts: SGLang builds it "
                                                                       "packed MXFP4")


def test_kimi_rule_not_applicable_elsewhere(tmp_path):
    manifest = load_manifest(qwen3_next_fp8(tmp_path / "q"))
    assert kimi_quark_prefix(manifest, Launch(tp=4)).outcome is Outcome.NOT_APPLICABLE


# ---------------------------------------------------------------------------------------- glm5-mxfp4-mtp
MTP_NAMES = [f"model.layers.3.{leaf}" for leaf in ("eh_proj", "self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa",
                                                  "shared_head.norm")]
BASE = ["re:.*lm_head", r"re:.*self_attn\.(q_a_proj|kv_a_proj_with_mqa)$"]


def glm5(tmp_path, *, exclude, eh_proj, architecture="GlmMoeDsaForCausalLM"):
    return load_manifest(deepseek_quark(tmp_path / "g", exclude=BASE + exclude, mtp_layer=True,
                                        architecture=architecture, forms={"eh_proj": eh_proj}))


@RELEASES
@pytest.mark.parametrize(("exclude", "eh_proj", "outcome", "text"), [
    (MTP_NAMES, "bf16", Outcome.PASS, "is [128, 256] (BF16): GlmMoeDsaForCausalLMNextN"),
    ([], "mxfp4", Outcome.PASS, "model.eh_proj an MXFP4 ReplicatedLinear"),
    (MTP_NAMES, "mxfp4", Outcome.FAIL, "checkpoint [128, 128] (U8) vs model [128, 256]"),
    ([], "bf16", Outcome.FAIL, "checkpoint [128, 256] (BF16) vs model [128, 128]"),
    # A regex names the MTP layer under the checkpoint's name, model.layers.3.*; the GLM draft asks about
    # model.eh_proj and renames plain names only, so eh_proj is built quantized: a failure SGLang would hit.
    ([r"re:model\.layers\.3\..*"], "bf16", Outcome.FAIL, "checkpoint [128, 256] (BF16) vs model [128, 128]"),
])
def test_glm5_mtp_eh_proj(tmp_path, release, exclude, eh_proj, outcome, text):
    result = glm5_mtp_eh_proj(glm5(tmp_path, exclude=exclude, eh_proj=eh_proj), Launch(tp=8, spec="mtp", release=release))
    assert result.outcome is outcome and text in result.reason and result.pr == "#23219", result.reason


def test_deepseek_draft_loads_unquantized_when_the_layer_is_excluded(tmp_path):
    manifest = glm5(tmp_path, exclude=[r"re:model\.layers\.3.*"], eh_proj="bf16", architecture="DeepseekV3ForCausalLM")
    result = glm5_mtp_eh_proj(manifest, Launch(tp=8, spec="mtp"))
    assert result.outcome is Outcome.PASS and "DeepseekV3ForCausalLMNextN" in result.reason
    assert "the draft loads unquantized" in result.reason


def test_glm5_rule_needs_the_mtp_cell(tmp_path):
    manifest = glm5(tmp_path, exclude=[], eh_proj="bf16")
    assert glm5_mtp_eh_proj(manifest, Launch(tp=8)).outcome is Outcome.NOT_APPLICABLE  # no NEXTN: never loaded
    assert glm5_mtp_eh_proj(load_manifest(qwen3_next_fp8(tmp_path / "q")),
                            Launch(tp=4, spec="mtp")).outcome is Outcome.NOT_APPLICABLE


# ------------------------------------------------------------------------------ quark-fp8-shared-experts
FP8_EXCLUDE = ["re:.*lm_head", r"re:.*self_attn\.(q_a_proj|kv_a_proj_with_mqa)$"]


def deepseek_fp8(tmp_path, **kwargs):
    return load_manifest(deepseek_quark(tmp_path / "d", exclude=kwargs.pop("exclude", FP8_EXCLUDE), spec=FP8_SPEC,
                                        mtp_layer=True, **kwargs))


def test_fp8_shared_experts_fail_on_0_5_17_only(tmp_path):
    """Issue 12's model: DeepseekV3, MLA, MoE with one shared expert, a NextN layer, amd-quark FP8."""
    manifest = deepseek_fp8(tmp_path)
    result = quark_fp8_shared_experts(manifest, Launch(tp=1, release=OLD, vendor="nvidia"))
    assert result.outcome is Outcome.FAIL and result.reason == (
        "model.layers.1.mlp.shared_experts.gate_up_proj is QuarkW8A8Fp8 (fp8_e4m3 per_tensor: float8_e4m3fn weights)"
        ", in a DeepseekV2MoE whose shared expert is not fused: SGLang 0.5.17 raises AttributeError: 'QuarkConfig' "
        "object has no attribute 'weight_block_size' at init")
    assert quark_fp8_shared_experts(manifest, Launch(tp=1, release=OLD, **AMD)).outcome is Outcome.FAIL  # MI300 too
    new = quark_fp8_shared_experts(manifest, Launch(tp=1, release=NEW, vendor="nvidia"))
    assert new.outcome is Outcome.PASS and "declares weight_block_size = None" in new.reason


def test_fused_shared_experts_are_not_built(tmp_path):
    """256 routed experts on a capable GPU: the shared expert is fused into the MoE kernel, unless disabled."""
    manifest = deepseek_fp8(tmp_path, n_routed_experts=256)
    assert quark_fp8_shared_experts(manifest, Launch(tp=8, release=OLD, **AMD)).outcome is Outcome.PASS
    disabled = Launch(tp=8, release=OLD, server_args=("--disable-shared-experts-fusion",), **AMD)
    assert quark_fp8_shared_experts(manifest, disabled).outcome is Outcome.FAIL
    mi250 = Launch(tp=8, release=OLD, vendor="amd", gpu_arch=("gfx90a",))
    assert quark_fp8_shared_experts(manifest, mi250).outcome is Outcome.FAIL  # below gfx942: no fusion


def test_shared_experts_that_take_other_branches_pass_on_0_5_17(tmp_path):
    excluded = deepseek_fp8(tmp_path / "x", exclude=[*FP8_EXCLUDE, "re:.*shared_experts.*"],
                            forms={"shared_experts": "bf16"})
    assert quark_fp8_shared_experts(excluded, Launch(release=OLD)).outcome is Outcome.PASS
    mxfp4 = load_manifest(deepseek_quark(tmp_path / "m", exclude=FP8_EXCLUDE))  # uint8 shared experts
    assert quark_fp8_shared_experts(mxfp4, Launch(release=OLD)).outcome is Outcome.PASS
    assert quark_fp8_shared_experts(load_manifest(qwen3_next_fp8(tmp_path / "q")),
                                    Launch(release=OLD)).outcome is Outcome.NOT_APPLICABLE


def test_the_draft_s_shared_expert_counts_with_mtp(tmp_path):
    """Every target shared expert excluded by name, the NextN layer's not: only a NEXTN cell builds it."""
    names = [f"model.layers.{i}.mlp.shared_experts.{p}" for i in (1, 2) for p in ("gate_proj", "up_proj", "down_proj")]
    manifest = deepseek_fp8(tmp_path, exclude=[*FP8_EXCLUDE, *names, "re:.*gate_up_proj$"])
    assert quark_fp8_shared_experts(manifest, Launch(release=OLD)).outcome is Outcome.PASS
    result = quark_fp8_shared_experts(manifest, Launch(release=OLD, spec="mtp"))
    assert result.outcome is Outcome.FAIL and result.reason.startswith("model.decoder.mlp.shared_experts.gate_up_proj")


# ------------------------------------------------------------------------------------ kimi-k25-eagle3-mla
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


@pytest.mark.process
def test_preflight_with_a_draft(tmp_path, capsys):
    from harness.cli import main

    target = deepseek_quark(tmp_path / "g", exclude=BASE, wrapper=True, n_routed_experts=384, layers=2)
    draft = checkpoints.eagle3_mla_draft(tmp_path / "d", q_lora_rank=None)
    assert main(["preflight", "--checkpoint", str(target), "--tp", "8", "--spec", "eagle3", "--draft", str(draft)]) == 1
    out = capsys.readouterr().out
    assert "PASS            kimi-k26-quark-prefix (#23408)" in out and "FAIL            kimi-k25-eagle3-mla" in out
    assert main(["preflight", "--checkpoint", str(target), "--spec", "eagle3"]) == 2
    assert "--spec eagle3 needs --draft PATH" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- no false alarms, ever
HEALTHY = {
    "qwen3-next fp8 tp4": (lambda p: qwen3_next_fp8(p), Launch(tp=4)),
    "qwen3-next fp8 tp1": (lambda p: qwen3_next_fp8(p), Launch(tp=1)),
    "small mla fp8 tp1": (lambda p: checkpoints.small_mla_fp8(p), Launch(tp=1)),
    "kimi wrapper mxfp4 tp4": (lambda p: deepseek_quark(p, exclude=KIMI_EXCLUDE, wrapper=True, n_routed_experts=384,
                                                        layers=2), Launch(tp=4, **AMD)),
    "text-only mxfp4 tp4": (lambda p: deepseek_quark(p, exclude=TEXT_ONLY_EXCLUDE), Launch(tp=4)),
    "glm5 mtp excluded": (lambda p: deepseek_quark(p, exclude=BASE + MTP_NAMES, mtp_layer=True, forms={"eh_proj": "bf16"},
                                                   architecture="GlmMoeDsaForCausalLM"), Launch(tp=8, spec="mtp")),
    "glm5 mtp quantized": (lambda p: deepseek_quark(p, exclude=BASE, mtp_layer=True, architecture="GlmMoeDsaForCausalLM"),
                           Launch(tp=8, spec="mtp")),
    "deepseek fp8 256 experts": (lambda p: deepseek_quark(p, exclude=FP8_EXCLUDE, spec=FP8_SPEC, n_routed_experts=256),
                                 Launch(tp=8, **AMD)),
    "qwen3-8b bf16": (lambda p: checkpoints.qwen3(p, layers=2), Launch(tp=1)),
    "qwen3-8b bf16 online mxfp4": (lambda p: checkpoints.qwen3(p, layers=2), Launch(tp=1, quantization="quark_mxfp4")),
}


@RELEASES
@pytest.mark.parametrize("name", list(HEALTHY))
def test_no_rule_fails_a_healthy_checkpoint(tmp_path, release, name):
    make, launch = HEALTHY[name]
    manifest = load_manifest(make(tmp_path / "c"))
    launch = Launch(**{**launch.__dict__, "release": release})
    failures = [r for r in (rule(manifest, launch) for rule in RULES) if r.outcome is Outcome.FAIL]
    assert not failures, failures


# ------------------------------------------------------------------------------------- which release
def test_an_engine_version_gets_a_known_release():
    from harness.loading.releases import choose

    assert choose(None).release is NEW and "engine version unknown" in choose(None).describe()
    assert choose("0.5.17").release is OLD and choose("0.5.17").describe() == "SGLang 0.5.17 loader"
    assert choose("0.5.22.post1").release is OLD and choose("0.5.23rc0").release is NEW
    assert choose("0.6.0").release is NEW and choose("0.4.9").release is OLD
    assert "predates the known releases" in choose("0.4.9").describe()


def test_a_cell_s_launch_carries_what_the_loader_reads(tmp_path):
    from harness.loading.releases import choose
    from harness.matrix import expand
    from harness.preflight import cell_launch
    from harness.suite import load_suite

    suite = tmp_path / "glm5.yaml"
    suite.write_text((Path(__file__).parent.parent / "suites" / "glm5.yaml").read_text())
    cell = next(c for c in expand(load_suite(suite)) if c.spec == "mtp")
    launch = cell_launch(cell, choose("0.5.17"))
    assert (launch.tp, launch.spec, launch.release, launch.vendor, launch.use_aiter) == (8, "mtp", OLD, "amd", True)
    assert launch.fusion_setting().capability == (9, 5) and "--disable-radix-cache" in launch.server_args
