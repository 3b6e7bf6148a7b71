"""Preflight rules: pure functions from a manifest and a launch to a verdict.

Each rule predicts one load failure of SGLang by running harness's mirrors of SGLang's own decisions (layer
skipping, Quark exclusion and schemes, the FP8 block checks, the NextN build), checked against SGLang's code
(tests/test_sglang_agreement.py), for the release the cell runs. A rule FAILs only where SGLang raises or a
weight's stored shape cannot load into what SGLang builds: a FAIL keeps a nightly cell from launching, so a false
alarm costs more than a missed prediction, and whatever a rule cannot model it passes with a note.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.loading import deepseek, fp8, quark
from harness.loading.deepseek import DEEPSEEK_FAMILY, mapped_exclude
from harness.loading.launch import Launch
from harness.loading.layout import QuarkModule, deepseek_modules, hf_layout, is_sparse_layer
from harness.loading.manifest import Manifest, Tensor
from harness.loading.skip import is_layer_skipped, should_ignore_layer


class Outcome(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_APPLICABLE = "NOT_APPLICABLE"


@dataclass(frozen=True)
class RuleResult:
    fix: str
    pr: str
    outcome: Outcome
    reason: str


PACKED = "U8"  # Quark MXFP4 weights: two E2M1 values a byte, [out, in / 2]


# ------------------------------------------------------------------------------------ qwen3-next-fp8-skip
def _fp8_packed_mapping(manifest: Manifest) -> dict[str, tuple[str, ...]]:
    """The packed_modules_mapping an Fp8Config gets: the model class's own (Qwen3-Next: qkv_proj, gate_up_proj;
    DeepSeek-family with q_lora_rank: fused_qkv_a_proj_with_mqa); is_layer_skipped's fallback does the rest."""
    if manifest.text_config().get("q_lora_rank") and manifest.architecture in DEEPSEEK_FAMILY:
        return {"fused_qkv_a_proj_with_mqa": ("q_a_proj", "kv_a_proj_with_mqa")}
    return {}


def fp8_block_partitions(manifest: Manifest, launch: Launch) -> RuleResult:
    """qwen3-next-fp8-skip (#23973): every FP8 block-quantized linear and MoE that SGLang does not skip passes
    Fp8LinearMethod.validate_block_quant_shapes / Fp8MoEMethod's check at the cell's TP and EP, as built:
    Qwen3-Next's in_proj_ba / in_proj_qkvz are merged layers, checked at any TP unless skipped."""
    fix, pr = "qwen3-next-fp8-skip", "#23973"
    q = manifest.quant
    if q is None or q.method != "fp8" or q.block is None or launch.quantization not in (None, "fp8"):
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "not an FP8 block-quantized checkpoint served as one")
    layout, mapping, release = hf_layout(manifest), _fp8_packed_mapping(manifest), launch.release
    moe_tp = max(launch.tp // max(launch.ep, 1), 1)
    checks = [(linear.name, lambda linear=linear: fp8.validate_block_quant_shapes(
                  q.block, linear.partition(launch.tp), fp8.linear_check_tp(release, launch.tp, launch.tp)))
              for linear in layout.linears]  # the attention TP group is the TP group without DP attention
    checks += [(moe.name, lambda moe=moe: fp8.validate_moe_block_shapes(
                   q.block, moe.intermediate_size // moe_tp, fp8.moe_check_tp(release, launch.tp, moe_tp),
                   launch.use_aiter, fp8.moe_padding(launch.use_aiter, launch.moe_padding_env)))
               for moe in layout.moes]
    skipped = 0
    for name, check in checks:
        try:
            if is_layer_skipped(name, q.ignored, mapping):
                skipped += 1
                continue
            check()
        except ValueError as problem:  # SGLang's own ValueError, ShardDisagreement included
            return RuleResult(fix, pr, Outcome.FAIL, f"{name}: {problem} (tp {launch.tp}"
                                                     f"{f', ep {launch.ep}' if launch.ep > 1 else ''}, {release})")
    checked = len(checks) - skipped
    aiter = "; the MoE check is skipped with aiter's 128 padding" if launch.use_aiter and layout.moes else ""
    return RuleResult(fix, pr, Outcome.PASS, f"{checked} FP8 modules split into whole {q.block[0]}x{q.block[1]} "
                                             f"blocks at tp {launch.tp}, {skipped} kept unquantized{aiter}"
                                             + _not_modelled(layout.not_modelled))


def _not_modelled(names: Sequence[str]) -> str:
    return f"; {len(names)} weights of kinds not modelled (e.g. {names[0]})" if names else ""


# ----------------------------------------------------------------------------------------- Quark, DeepSeek
@dataclass(frozen=True)
class QuarkView:
    """A DeepSeek-family Quark checkpoint as SGLang's loader sees it: module and tensor names under the loader's
    prefix, the exclude list after the model's weight-name mapper, and the packed-modules mapping in force."""

    config: Mapping[str, Any]  # the text model's
    prefix: str
    exclude: tuple[str, ...]
    mapping: Mapping[str, Sequence[str]]
    tensors: Mapping[str, Tensor]
    raw: Mapping[str, Any]


KIMI_WRAPPER = "KimiK25ForConditionalGeneration"
KIMI_RENAME = ("language_model.layers.", "language_model.model.layers.")  # its hf_to_sglang_mapper (prefix)


def quark_view(manifest: Manifest) -> QuarkView | None:
    """None unless a pre-quantized Quark checkpoint of a DeepSeek-family architecture."""
    q = manifest.quant
    if q is None or q.method != "quark" or manifest.architecture not in DEEPSEEK_FAMILY:
        return None
    config = manifest.text_config()
    if manifest.architecture == KIMI_WRAPPER:
        # #23408: the text model gets the `language_model` prefix for a QuarkConfig (0.5.17 and 0.5.23), and
        # its QuarkConfig's mapping becomes DeepseekV2ForCausalLM's own (update_packed_modules_mapping).
        old, new = KIMI_RENAME

        def rename(name: str) -> str:
            return new + name[len(old):] if name.startswith(old) else name

        mapping = {"fused_qkv_a_proj_with_mqa": ("q_a_proj", "kv_a_proj_with_mqa")} if config.get("q_lora_rank") else {}
        return QuarkView(config, "language_model.", tuple(mapped_exclude(q.ignored, rename)), mapping,
                         {rename(n): t for n, t in manifest.tensors.items()}, q.raw)
    return QuarkView(config, "", tuple(mapped_exclude(q.ignored)), deepseek.QUARK_PACKED_MODULES, manifest.tensors,
                     q.raw)


def _shared_experts_fusable(manifest: Manifest, launch: Launch) -> bool:
    """Whether SGLang may fuse the shared expert into `experts` (then no standalone shared_experts MLP exists)."""
    config = manifest.text_config()
    architecture = (config.get("architectures") or [None])[0] if manifest.architecture == KIMI_WRAPPER \
        else manifest.architecture
    if architecture is None:
        return True  # unknown: assume it may be
    model_class = "GlmMoeDsaForCausalLM" if manifest.architecture == "GlmMoeDsaForCausalLM" else "DeepseekV3ForCausalLM"
    return deepseek.fused_shared_experts(architecture, model_class, config.get("n_routed_experts"),
                                         config.get("n_shared_experts"), "quark", launch.fusion_setting()) > 0


def _built_packed(view: QuarkView, module: QuarkModule, release) -> tuple[bool, str] | None:
    """Whether SGLang builds the module with packed MXFP4 weights, and why; None where harness cannot say."""
    if should_ignore_layer(module.name, view.exclude, view.mapping, release=release):
        return False, "excluded"
    try:
        config = quark.layer_config(view.raw, module.name, module.layer_type, view.mapping)
    except quark.Unmodelled:
        return None
    weight = config.get("weight") or {}
    if module.layer_type == "FusedMoE":
        return weight.get("dtype") == "fp4", f"quantized ({weight.get('dtype')})"
    found = quark.scheme(config)
    return (None if found == quark.OTHER else (found == quark.MXFP4, f"quantized ({found})"))


def _stored_vs_built(view: QuarkView, module: QuarkModule, release) -> str | None:
    """The mismatch that fails a load, or None."""
    stored = {name: view.tensors[name] for name in module.stored if name in view.tensors}
    if not stored:
        return None
    built = _built_packed(view, module, release)
    if built is None:
        return None
    packed, why = built
    wrong = {name: t for name, t in stored.items() if (t.dtype == PACKED) != packed}
    if not wrong:
        return None
    name, tensor = next(iter(wrong.items()))
    more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
    form = "packed MXFP4 uint8 [out, in/2]" if packed else "unpacked [out, in]"
    return (f"{module.name}: SGLang builds it {form}, {why}, but the checkpoint stores {name} as {tensor.dtype} "
            f"{list(tensor.shape)}{more}: its weight loader fails on the shape")


def _unmatched(view: QuarkView, release) -> list[str]:
    names = {n.rsplit(".", 1)[0] for n in view.tensors}  # the stored modules
    return [entry for entry in view.exclude if not any(should_ignore_layer(n, [entry], release=release) for n in names)]


def kimi_quark_prefix(manifest: Manifest, launch: Launch) -> RuleResult:
    """kimi-k26-quark-prefix (#23408): every module a DeepSeek-family Quark checkpoint builds (under the loader's
    names: `language_model.` for the KimiK25 wrapper, fused_qkv_a_proj_with_mqa from q_a_proj and
    kv_a_proj_with_mqa) is stored in the form SGLang builds it: excluded modules unpacked, MXFP4 ones packed.
    Shards that disagree, or resolve to different schemes, fail as SGLang raises. Exclude entries that name
    nothing are a note: SGLang loads such checkpoints fine."""
    fix, pr = "kimi-k26-quark-prefix", "#23408"
    view = quark_view(manifest)
    if view is None or launch.quantization not in (None, "quark"):
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "not a pre-quantized Quark checkpoint of a "
                                                           "DeepSeek-family model (DeepseekV2Model layers)")
    return _check_quark_modules(fix, pr, manifest, launch, view)


def _check_quark_modules(fix: str, pr: str, manifest: Manifest, launch: Launch, view: QuarkView) -> RuleResult:
    release = launch.release
    modules = deepseek_modules(view.config, view.prefix, view.tensors,
                               with_shared_experts=not _shared_experts_fusable(manifest, launch))
    checked = 0
    for module in modules:
        try:
            problem = _stored_vs_built(view, module, release)
        except ValueError as raised:  # SGLang's own ValueError (shards excluded apart, or configured apart)
            return RuleResult(fix, pr, Outcome.FAIL, f"{module.name}: {raised} ({release})")
        if problem:
            return RuleResult(fix, pr, Outcome.FAIL, f"{problem} ({release})")
        checked += 1
    unmatched = _unmatched(view, release)
    note = f"; {len(unmatched)} exclude entries name no module here (harmless), e.g. {unmatched[0]!r}" if unmatched else ""
    where = f"under {view.prefix!r}" if view.prefix else "with no prefix"
    return RuleResult(fix, pr, Outcome.PASS, f"{checked} Quark modules {where} stored as {release} builds them{note}")


# ---------------------------------------------------------------------------------------- glm5-mxfp4-mtp
def _eh_proj_expected(view: QuarkView, build: deepseek.NextnBuild, hidden: int,
                      release) -> tuple[str, list[int], bool] | None:
    """(how, expected weight shape, packed) for the draft's eh_proj, or None for a scheme harness cannot say."""
    if not build.quantized:
        return "the NextN layer is excluded, so the draft loads unquantized (eh_proj an nn.Linear)", [hidden, 2 * hidden], False
    if build.eh_proj_excluded:
        return "the draft is quantized and model.eh_proj excluded", [hidden, 2 * hidden], False
    found = quark.scheme(quark.layer_config(view.raw, "model.eh_proj", "ReplicatedLinear", view.mapping))
    if found == quark.MXFP4:
        return "the draft is quantized and model.eh_proj an MXFP4 ReplicatedLinear(2*hidden, hidden)", [hidden, hidden], True
    if found == quark.FP8_W8A8:
        return "the draft is quantized and model.eh_proj an FP8 ReplicatedLinear(2*hidden, hidden)", [hidden, 2 * hidden], False
    return None


def glm5_mtp_eh_proj(manifest: Manifest, launch: Launch) -> RuleResult:
    """glm5-mxfp4-mtp (#23219): with --speculative-algorithm NEXTN, the MTP layer's eh_proj is stored as the
    draft builds it. The draft class (DeepseekV3ForCausalLMNextN, GlmMoeDsaForCausalLMNextN) decides from the
    Quark exclude list, as the release has it, whether the draft loads unquantized, or quantized with eh_proj
    excluded (bf16 [h, 2h]) or MXFP4 (uint8 [h, h] and E8M0 scales [h, 2h/32])."""
    fix, pr = "glm5-mxfp4-mtp", "#23219"
    config = manifest.text_config()
    draft_class = deepseek.NEXTN_DRAFT_CLASS.get(manifest.architecture or "")
    layers, hidden = config.get("num_hidden_layers"), config.get("hidden_size")
    if (manifest.quant is None or manifest.quant.method != "quark" or draft_class is None
            or not config.get("num_nextn_predict_layers") or not hidden):
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "not a Quark checkpoint with a NextN (MTP) layer")
    if launch.spec != "mtp":
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "the cell does not load the MTP layer "
                                                           "(--speculative-algorithm NEXTN)")
    view = quark_view(manifest)
    name = f"model.layers.{layers}.eh_proj.weight"
    if name not in manifest.tensors:
        return RuleResult(fix, pr, Outcome.FAIL, f"{name} is missing: num_nextn_predict_layers is set but the "
                                                 f"checkpoint holds no MTP layer {layers}")
    build = deepseek.nextn_build(launch.release, draft_class, layers, manifest.quant.ignored)
    expected = _eh_proj_expected(view, build, hidden, launch.release)
    tensor = manifest.tensors[name]
    stored = f"{list(tensor.shape)} ({tensor.dtype})"
    if expected is None:
        return RuleResult(fix, pr, Outcome.PASS, f"{draft_class}: eh_proj's scheme is not modelled; {name} is {stored}")
    how, shape, packed = expected
    scale = manifest.tensors.get(name + "_scale")
    ok = list(tensor.shape) == shape and (tensor.dtype == PACKED) == packed and (
        not packed or (scale is not None and list(scale.shape) == [hidden, 2 * hidden // 32]))
    verdict = Outcome.PASS if ok else Outcome.FAIL
    text = f"{name} is {stored}" if ok else f"shape mismatch for {name}: checkpoint {stored} vs model {shape}"
    return RuleResult(fix, pr, verdict, f"{text}: {draft_class}, {launch.release}: {how}")


# --------------------------------------------------------------------------------- quark-fp8-shared-experts
def _shared_expert_problem(view: QuarkView, gate_up: str, release) -> str | None:
    """Why this standalone shared expert raises at init on a release whose QuarkConfig lacks weight_block_size."""
    try:
        if should_ignore_layer(gate_up, view.exclude, view.mapping, release=release):
            return None
        config = quark.layer_config(view.raw, gate_up, "MergedColumnParallelLinear", view.mapping)
    except (ValueError, quark.Unmodelled):  # another failure, predicted by kimi-k26-quark-prefix
        return None
    if quark.scheme(config) != quark.FP8_W8A8:
        return None
    weight = config.get("weight") or {}
    return f"{gate_up} is QuarkW8A8Fp8 ({weight.get('dtype')} {weight.get('qscheme')}: float8_e4m3fn weights)"


def quark_fp8_shared_experts(manifest: Manifest, launch: Launch) -> RuleResult:
    """quark-fp8-shared-experts: SGLang 0.5.17's DeepseekV2MoE reads `quant_config.weight_block_size` off any
    standalone shared expert whose weights are float8_e4m3fn. A QuarkConfig has that attribute only when it
    requantizes an FP8 source, so a Quark FP8 (W8A8 per-tensor/per-channel) shared expert that is not fused into
    the routed experts fails at init: AttributeError: 'QuarkConfig' object has no attribute 'weight_block_size'.
    0.5.23 declares weight_block_size = None on every QuantizationConfig. MXFP4 shared experts (uint8) and
    excluded ones (bf16) take other branches, and on MI300 the weights are still float8_e4m3fn at init."""
    fix, pr = "quark-fp8-shared-experts", "deepseek_v2.py (0.5.17)"
    q = manifest.quant
    if (q is None or q.method != "quark" or manifest.architecture not in DEEPSEEK_FAMILY
            or not (manifest.text_config().get("n_shared_experts") or 0) or launch.quantization not in (None, "quark")):
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "not a Quark checkpoint of a DeepSeek-family MoE with "
                                                           "shared experts")
    release = launch.release
    if release.quark_config_has_weight_block_size:
        return RuleResult(fix, pr, Outcome.PASS, f"{release}: QuantizationConfig declares weight_block_size = None")
    if _shared_experts_fusable(manifest, launch):
        return RuleResult(fix, pr, Outcome.PASS, "the shared expert is fused into the routed experts "
                                                 "(no standalone shared_experts MLP is built)")
    view = quark_view(manifest)
    candidates = [(view, f"{view.prefix}model.layers.{i}.mlp.shared_experts.gate_up_proj")
                  for i in range(view.config.get("num_hidden_layers") or 0) if is_sparse_layer(view.config, i)]
    if launch.spec == "mtp" and manifest.architecture in deepseek.NEXTN_DRAFT_CLASS:
        build = deepseek.nextn_build(release, deepseek.NEXTN_DRAFT_CLASS[manifest.architecture],
                                     view.config["num_hidden_layers"], manifest.quant.ignored)
        if build.quantized:  # the draft's one MoE layer, under its own exclude list
            draft = QuarkView(view.config, view.prefix, build.exclude, view.mapping, view.tensors, view.raw)
            candidates.append((draft, "model.decoder.mlp.shared_experts.gate_up_proj"))
    for where, gate_up in candidates:
        problem = _shared_expert_problem(where, gate_up, release)
        if problem:
            return RuleResult(fix, pr, Outcome.FAIL, f"{problem}, in a DeepseekV2MoE whose shared expert is not "
                                                     f"fused: {release} raises AttributeError: 'QuarkConfig' object "
                                                     f"has no attribute 'weight_block_size' at init")
    return RuleResult(fix, pr, Outcome.PASS, f"no standalone shared expert is Quark FP8 ({len(candidates)} MoE layers)")


# ------------------------------------------------------------------------------------------ online-mxfp4
ONLINE_MXFP4 = "quark_mxfp4"  # SGLang's --quantization value for online MXFP4


def online_mxfp4(manifest: Manifest, launch: Launch) -> RuleResult:
    """online-mxfp4 (#18005): a cell that quantizes online loads a checkpoint that is not MXFP4 already, and
    every layer the online scheme quantizes splits into whole MXFP4 blocks of 32 along its input on each rank.
    The PASS reason names the layers quantized and kept, and the predicted weight memory per rank."""
    from harness.loading import online

    fix, pr, tp = "online-mxfp4", "#18005", launch.tp
    if launch.quantization != ONLINE_MXFP4:
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, f"the cell does not quantize online "
                                                           f"(--quantization {ONLINE_MXFP4})")
    if online.is_prequantized_mxfp4(manifest):
        return RuleResult(fix, pr, Outcome.FAIL, f"the checkpoint is MXFP4 already (quant_method "
                                                 f"{manifest.quant.method if manifest.quant else '?'}): online "
                                                 f"quantization needs a BF16, FP8 or NVFP4 source "
                                                 f"(QuarkConfig asserts not is_prequantized)")
    problems = online.partition_problems(manifest, tp)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return RuleResult(fix, pr, Outcome.FAIL, problems[0] + more)
    prediction = online.predict_weight_memory(manifest, tp)
    leaves = online.quantized_leaf_counts(manifest, tp)
    return RuleResult(fix, pr, Outcome.PASS,
                      f"online MXFP4 quantizes {prediction.quantized_layers} linears "
                      f"({', '.join(sorted(leaves))}), keeps {', '.join(prediction.kept_layers) or 'none'} in BF16; "
                      f"predicted weights per rank {prediction.online_mxfp4_gib:.2f} GiB "
                      f"(BF16 {prediction.bf16_gib:.2f} GiB)")


# ----------------------------------------------------------------------------------- kimi-k25-eagle3-mla
def _shape(manifest: Manifest, name: str) -> str:
    tensor = manifest.tensors[name]
    return f"{list(tensor.shape)} ({tensor.dtype})"


def eagle3_mla_draft(draft: Manifest) -> RuleResult:
    """kimi-k25-eagle3-mla (#23803, #26506, #19689): the EAGLE3 draft declares Eagle3DeepseekV2ForCausalLM, has q_lora_rank,
    and its fused_qkv_a_proj_with_mqa reads [embed_norm, hidden_norm], 2 x hidden_size wide."""
    fix, pr = "kimi-k25-eagle3-mla", "#23803, #26506, #19689"
    config = draft.text_config()
    if draft.architecture != "Eagle3DeepseekV2ForCausalLM":
        return RuleResult(fix, pr, Outcome.FAIL, f"the draft declares {draft.architecture}, not "
                                                 f"Eagle3DeepseekV2ForCausalLM (no MLA EAGLE3 draft class)")
    if config.get("model_type") not in ("deepseek_v3", "deepseek_v2", "kimi_k2"):
        return RuleResult(fix, pr, Outcome.FAIL, f"model_type {config.get('model_type')!r} is no DeepseekV3Config alias")
    if not config.get("q_lora_rank"):
        return RuleResult(fix, pr, Outcome.FAIL, "q_lora_rank is missing: the MLA draft layer needs it")
    names = [n for n in draft.tensors if n.endswith("fused_qkv_a_proj_with_mqa.weight")]
    if not names:
        return RuleResult(fix, pr, Outcome.FAIL, "no fused_qkv_a_proj_with_mqa weight in the draft")
    hidden = config["hidden_size"]
    wanted_out = config["q_lora_rank"] + config.get("kv_lora_rank", 0) + config.get("qk_rope_head_dim", 0)
    for name in names:
        out_features, in_features = draft.tensors[name].shape[:2]
        if in_features != 2 * hidden or out_features != wanted_out:
            return RuleResult(fix, pr, Outcome.FAIL,
                              f"{name} is {_shape(draft, name)}; the draft layer expects [{wanted_out}, {2 * hidden}] "
                              f"(q_lora_rank + kv_lora_rank + qk_rope_head_dim, 2 x hidden_size)")
    return RuleResult(fix, pr, Outcome.PASS, f"MLA EAGLE3 draft: {names[0]} reads 2 x {hidden}")


# The rules `harness preflight` runs on a target checkpoint, each taking (manifest, launch); draft rules apart.
RULES = (fp8_block_partitions, glm5_mtp_eh_proj, kimi_quark_prefix, quark_fp8_shared_experts, online_mxfp4)
DRAFT_RULES = {"eagle3": eagle3_mla_draft}
# Which fix (or guard, harness.fixes) each rule stands for; `harness fixes` lists rules by it.
RULE_FIXES = {
    fp8_block_partitions.__name__: "qwen3-next-fp8-skip",
    glm5_mtp_eh_proj.__name__: "glm5-mxfp4-mtp",
    kimi_quark_prefix.__name__: "kimi-k26-quark-prefix",
    quark_fp8_shared_experts.__name__: "quark-fp8-shared-experts",
    online_mxfp4.__name__: "online-mxfp4",
    eagle3_mla_draft.__name__: "kimi-k25-eagle3-mla",
}
