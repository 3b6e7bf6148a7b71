"""Preflight rules, one per guarded fix: pure functions from a manifest (and the cell's TP) to a verdict."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from harness.loading.manifest import Manifest
from harness.loading.skip import FALLBACK_FUSED_SHARDS, ShardDisagreement, is_layer_skipped


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


# Row-parallel layers split their input across TP ranks; every other linear splits its output.
ROW_PARALLEL = ("o_proj", "down_proj", "out_proj")
NOT_LINEAR = ("embed_tokens", "lm_head", "norm", "conv1d", "A_log", "dt_bias")


def fp8_block_partitions(manifest: Manifest, tp: int, quantization: str | None = None,
                         fused_mapping: Mapping[str, tuple[str, ...]] = FALLBACK_FUSED_SHARDS) -> RuleResult:
    """qwen3-next-fp8-skip (#23973, #23467): every FP8 block-quantized linear the loader does not skip
    must split into TP partitions that are whole blocks, or SGLang's validate_block_quant_shapes fails."""
    fix, pr = "qwen3-next-fp8-skip", "#23973"
    quant = manifest.quant
    if quant is None or quant.method != "fp8" or quant.block is None:
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "not an FP8 block-quantized checkpoint")
    block_n, block_k = quant.block
    checked = 0
    for name, tensor in sorted(manifest.tensors.items()):
        if not name.endswith(".weight") or len(tensor.shape) != 2 or any(part in name for part in NOT_LINEAR):
            continue
        prefix = name.removesuffix(".weight")
        try:
            if is_layer_skipped(prefix, quant.ignored, fused_mapping):
                continue
        except ShardDisagreement as problem:
            return RuleResult(fix, pr, Outcome.FAIL, str(problem))
        out_features, in_features = tensor.shape
        checked += 1
        if prefix.rsplit(".", 1)[-1] in ROW_PARALLEL:
            size, block, what = in_features // tp, block_k, "input_size_per_partition = {} ... block_k"
        else:
            size, block, what = out_features // tp, block_n, "output_partition_size = {} ... block_n"
        if size % block:
            partition, block_name = what.split(" ... ")
            # Worded as SGLang's own ValueError, so the prediction reads like the failure it prevents.
            return RuleResult(fix, pr, Outcome.FAIL,
                              f"{prefix}: Weight {partition.format(size)} is not divisible by weight quantization "
                              f"{block_name} = {block} at tp {tp} (shape {list(tensor.shape)})")
    return RuleResult(fix, pr, Outcome.PASS, f"{checked} FP8 linears split into whole {block_n}x{block_k} blocks "
                                             f"at tp {tp}")


def _shape(manifest: Manifest, name: str) -> str:
    tensor = manifest.tensors[name]
    return f"{list(tensor.shape)} ({tensor.dtype})"


def glm5_mtp_eh_proj(manifest: Manifest, tp: int, quantization: str | None = None) -> RuleResult:
    """glm5-mxfp4-mtp (#23219): the MTP layer (model.layers.{num_hidden_layers}) is either excluded, with
    eh_proj in high precision [h, 2h], or quantized, with eh_proj FP4-packed uint8 [h, h] and E8M0 scales
    [h, 2h/32]. Anything else is the load failure SGLang showed, named with both shapes."""
    fix, pr = "glm5-mxfp4-mtp", "#23219"
    config, quant = manifest.text_config(), manifest.quant
    layers, hidden = config.get("num_hidden_layers"), config.get("hidden_size")
    name = f"model.layers.{layers}.eh_proj.weight"
    if quant is None or quant.method != "quark" or not config.get("num_nextn_predict_layers") or not hidden:
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "not a Quark checkpoint with an MTP (NextN) layer")
    if name not in manifest.tensors:
        return RuleResult(fix, pr, Outcome.FAIL, f"{name} is missing: num_nextn_predict_layers is set but the "
                                                 f"checkpoint holds no MTP layer {layers}")
    from harness.loading.skip import quark_excluded

    excluded = quark_excluded(name.removesuffix(".weight"), quant.ignored)  # one question: no need to precompile
    tensor = manifest.tensors[name]
    if excluded:
        expected, ok = [hidden, 2 * hidden], tensor.dtype != "U8" and list(tensor.shape) == [hidden, 2 * hidden]
        how = "excluded from quantization, so the NextN model loads unquantized"
    else:
        scale = manifest.tensors.get(name + "_scale")
        expected = [hidden, hidden]
        ok = (tensor.dtype == "U8" and list(tensor.shape) == expected and scale is not None
              and list(scale.shape) == [hidden, 2 * hidden // 32])
        how = "quantized, so eh_proj is a quantized ReplicatedLinear(2*hidden, hidden)"
    if ok:
        return RuleResult(fix, pr, Outcome.PASS, f"MTP layer {layers} is {how}; {name} is {_shape(manifest, name)}")
    return RuleResult(fix, pr, Outcome.FAIL, f"shape mismatch for {name}: checkpoint {_shape(manifest, name)} vs model "
                                             f"{expected} (the MTP layer is {how})")


def eagle3_mla_draft(draft: Manifest) -> RuleResult:
    """kimi-k25-eagle3-mla (seed 004): the EAGLE3 draft declares Eagle3DeepseekV2ForCausalLM, has q_lora_rank,
    and its fused_qkv_a_proj_with_mqa reads [embed_norm, hidden_norm], 2 x hidden_size wide."""
    fix, pr = "kimi-k25-eagle3-mla", "seed 004"
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


# SGLang's packed mapping for Quark after #23408 (model_loader/loader.py::_get_quantization_config).
QUARK_PACKED_MODULES = {
    "fused_qkv_a_proj_with_mqa": ("q_a_proj", "kv_a_proj_with_mqa"),
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}
LANGUAGE_MODEL_PREFIX = "language_model."


def kimi_quark_prefix(manifest: Manifest, tp: int, quantization: str | None = None) -> RuleResult:
    """kimi-k26-quark-prefix (#23408): with the `language_model.` prefix the loader gives the text model of
    a KimiK25-style wrapper, every Quark exclude entry names some module, and the shards of every fused module
    are excluded (high precision) or quantized (uint8) together."""
    fix, pr = "kimi-k26-quark-prefix", "#23408"
    quant = manifest.quant
    modules = {name.rsplit(".", 1)[0] for name in manifest.tensors if name.endswith(".weight")}
    if quant is None or quant.method != "quark" or not any(m.startswith(LANGUAGE_MODEL_PREFIX) for m in modules):
        return RuleResult(fix, pr, Outcome.NOT_APPLICABLE, "not a Quark checkpoint with a language_model sub-model")
    from harness.loading.skip import exclude_matcher, quark_excluded

    for entry in quant.ignored:
        names_it = exclude_matcher([entry])
        if not any(names_it(module) for module in modules):
            return RuleResult(fix, pr, Outcome.FAIL,
                              f"exclude entry {entry!r} names no module under the loader's names "
                              f"(e.g. {sorted(modules)[0]}): the layers it meant to keep in high precision "
                              f"would be built quantized")
    excluded_by_config = exclude_matcher(quant.ignored)
    checked = 0
    for module in sorted(modules):
        for fused, shards in QUARK_PACKED_MODULES.items():
            if not module.endswith("." + shards[0]):
                continue
            parent = module[: -len(shards[0])]
            if not all(parent + shard in modules for shard in shards):
                continue
            try:
                excluded = quark_excluded(parent + fused, excluded_by_config, QUARK_PACKED_MODULES)
            except ShardDisagreement as problem:
                return RuleResult(fix, pr, Outcome.FAIL, str(problem))
            stored = {shard: manifest.tensors[parent + shard + ".weight"].dtype for shard in shards}
            if excluded == any(dtype == "U8" for dtype in stored.values()) or len(set(stored.values())) > 1:
                state = "excluded" if excluded else "quantized"
                return RuleResult(fix, pr, Outcome.FAIL, f"{parent}{fused}: {state} by the config but its shards are "
                                                         f"stored as {stored}")
            checked += 1
    return RuleResult(fix, pr, Outcome.PASS, f"every exclude entry names a module; {checked} fused modules consistent")


ONLINE_MXFP4 = "quark_mxfp4"  # SGLang's --quantization value for online MXFP4


def online_mxfp4(manifest: Manifest, tp: int, quantization: str | None = None) -> RuleResult:
    """online-mxfp4 (#18005): a cell that quantizes online loads a checkpoint that is not MXFP4 already, and
    every layer the online scheme quantizes splits into whole MXFP4 blocks of 32 along its input on each rank.
    The PASS reason names the layers quantized and kept, and the predicted weight memory per rank."""
    from harness.loading import online

    fix, pr = "online-mxfp4", "#18005"
    if quantization != ONLINE_MXFP4:
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


# The rules `harness preflight` runs on a target checkpoint, each taking (manifest, tp, quantization) where
# quantization is the engine's --quantization value (None when the checkpoint's own config decides);
# draft rules apart.
RULES = (fp8_block_partitions, glm5_mtp_eh_proj, kimi_quark_prefix, online_mxfp4)
DRAFT_RULES = {"eagle3": eagle3_mla_draft}
# Which fix each rule guards (the rules name it in their results too; `harness fixes` lists rules by fix).
RULE_FIXES = {
    fp8_block_partitions.__name__: "qwen3-next-fp8-skip",
    glm5_mtp_eh_proj.__name__: "glm5-mxfp4-mtp",
    kimi_quark_prefix.__name__: "kimi-k26-quark-prefix",
    online_mxfp4.__name__: "online-mxfp4",
    eagle3_mla_draft.__name__: "kimi-k25-eagle3-mla",
}
