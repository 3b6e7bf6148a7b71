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


def fp8_block_partitions(manifest: Manifest, tp: int,
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


# The rules `harness preflight` runs, each taking (manifest, tp). More join as the other fixes' rules land.
RULES = (fp8_block_partitions,)
