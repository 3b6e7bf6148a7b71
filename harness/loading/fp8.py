"""SGLang's FP8 block-quantization shape checks, which raise at init when a layer's TP partition is not whole
blocks: `Fp8LinearMethod.validate_block_quant_shapes` and the check in `Fp8MoEMethod.create_fp8_moe_weight_`.

Both raise ValueError with SGLang's own message; the tests replay thousands of SGLang's answers
(tests/golden/sglang/). What changed between releases is which TP size the checks read: the global TP (0.5.17)
or the layer's own group, the MoE's TP of tp / ep for experts (0.5.23).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.loading.releases import Release

AITER_MOE_PADDING = 128  # AITER_PADDING_SIZE; TRITON_PADDING_SIZE too, with SGLANG_MOE_PADDING=1


@dataclass(frozen=True)
class LinearPartition:
    """One rank's share of a linear layer, as SGLang's linear classes compute it."""

    input_size: int
    input_size_per_partition: int
    output_size: int
    output_partition_sizes: tuple[int, ...]

    @property
    def output_size_per_partition(self) -> int:
        return sum(self.output_partition_sizes)


def linear_check_tp(release: Release, global_tp: int, layer_tp: int) -> int:
    return layer_tp if release.fp8_checks_use_layer_groups else global_tp


def validate_block_quant_shapes(block: Sequence[int], partition: LinearPartition, tp_size: int,
                                skip_block_quant_check: bool = False) -> None:
    """Fp8LinearMethod.validate_block_quant_shapes: input partitions of row-parallel layers must be whole
    block_k, and output partitions whole block_n where the layer is split by TP or merges several outputs
    (a single-output layer at TP 1 is never checked)."""
    block_n, block_k = block[0], block[1]
    if skip_block_quant_check:
        return
    p = partition
    if tp_size > 1 and p.input_size // p.input_size_per_partition == tp_size and p.input_size_per_partition % block_k:
        raise ValueError(f"Weight input_size_per_partition = {p.input_size_per_partition} is not divisible by weight "
                         f"quantization block_k = {block_k}.")
    if (tp_size > 1 and p.output_size // p.output_size_per_partition == tp_size) or len(p.output_partition_sizes) > 1:
        for size in p.output_partition_sizes:
            if size % block_n:
                raise ValueError(f"Weight output_partition_size = {size} is not divisible by weight quantization "
                                 f"block_n = {block_n}.")


def moe_check_tp(release: Release, global_tp: int, moe_tp: int) -> int:
    return moe_tp if release.fp8_checks_use_layer_groups else global_tp


def moe_padding(use_aiter: bool, moe_padding_env: bool) -> int:
    """get_moe_padding_size: aiter's, else Triton's only when SGLANG_MOE_PADDING=1."""
    return AITER_MOE_PADDING if use_aiter or moe_padding_env else 0


def validate_moe_block_shapes(block: Sequence[int], intermediate_size_per_partition: int, tp_size: int,
                              use_aiter: bool, padding: int) -> None:
    """Fp8MoEMethod's check: the experts' gate/up output and down input per rank must be whole blocks, except
    with aiter when its padding equals both block sizes (SGLANG_USE_AITER=1 on ROCm with 128 x 128 blocks)."""
    block_n, block_k = block[0], block[1]
    if use_aiter and padding == block_n == block_k:
        return
    size = intermediate_size_per_partition
    if size % block_n:
        raise ValueError(f"The output_size of gate's and up's weight = {size} is not divisible by weight "
                         f"quantization block_n = {block_n}.")
    if tp_size > 1 and size % block_k:
        raise ValueError(f"The input_size of down's weight = {size} is not divisible by weight quantization "
                         f"block_k = {block_k}.")
