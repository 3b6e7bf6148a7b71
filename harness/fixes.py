"""The SGLang fixes the harness guards, as first-class data.

Facts from ../shared/reference/fixes.md and the PR write-ups in ../shared/seeds/. Suites name
these ids; reports show them beside every verdict so a red row points at the fix it guards.

Two kinds: a `fix` is an SGLang change a suite re-validates; a `guard` is a loader failure class of the Quark /
FP8 stack found in an SGLang release, with no fix of its own to validate, which a preflight rule predicts so the
cells it would break are never launched. A guard points at the SGLang code and the error it raises.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fix:
    id: str
    pr: str
    model: str
    summary: str
    validated_with: str
    kind: str = "fix"  # fix | guard


FIXES: dict[str, Fix] = {
    fix.id: fix
    for fix in (
        Fix(
            id="kimi-k26-quark-prefix",
            pr="#23408",
            model="Kimi-K2.6 Quark MXFP4",
            summary="language_model prefix for QuarkConfig and the fused_qkv_a_proj_with_mqa packed mapping",
            validated_with="GSM8K 0.935 (lm_eval), --tp 4 --trust-remote-code",
        ),
        Fix(
            id="glm5-mxfp4-mtp",
            pr="#23219",
            model="GLM-5-MXFP4 with MTP (NEXTN)",
            summary="eh_proj as a quantized ReplicatedLinear(2*hidden, hidden); excluded MTP layer loads in bf16",
            validated_with="GSM8K 0.941, --tp 8 --speculative-algorithm NEXTN",
        ),
        Fix(
            id="qwen3-next-fp8-skip",
            pr="#23973",
            model="Qwen3-Next FP8 (block 128), TP4",
            summary="in_proj_ba / in_proj_qkvz are real tensors, not fused shards; dot-boundary layer skipping",
            validated_with="server starts on 4 GPUs; CPU regression tests",
        ),
        Fix(
            id="online-mxfp4",
            pr="#18005",
            model="BF16 dense and MoE checkpoints, --quantization quark_mxfp4 (gfx95x)",
            summary="each shard quantized to MXFP4 in its weight loader; peak-memory lines at DEBUG",
            validated_with="Qwen3-8B < 6 GiB, Qwen3-30B-A3B < 17 GiB; GSM8K > 0.85 / > 0.89",
        ),
        Fix(
            id="kimi-k25-eagle3-mla",
            pr="#23803, #26506, #19689",
            model="Kimi-K2.5 with an EAGLE3 MLA draft",
            summary="Eagle3DeepseekV2ForCausalLM: MLA draft layer with a 2*hidden fused_qkv_a_proj_with_mqa",
            validated_with="GPQA 0.87, accept length 2.7",
        ),
        Fix(
            id="quark-fp8-shared-experts",
            pr="deepseek_v2.py DeepseekV2MoE.__init__ (0.5.17; 0.5.23 declares QuantizationConfig.weight_block_size)",
            model="DeepSeek-V3-style Quark FP8 (W8A8 per-tensor/per-channel) with a standalone shared expert",
            summary="an FP8 shared expert's quant_config.weight_block_size is read off a QuarkConfig, which has "
                    "none: AttributeError: 'QuarkConfig' object has no attribute 'weight_block_size' at init",
            validated_with="observed on real SGLang 0.5.17 with a tiny DeepseekV3 (MLA, MoE, NextN) amd-quark FP8 export",
            kind="guard",
        ),
    )
}
