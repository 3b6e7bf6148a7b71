"""aiter.ops.triton.quant, reference: `dynamic_mxfp4_quant` (aiter/ops/triton/quant.py:126-210)."""

from __future__ import annotations

import torch

from aiter._harness import MXFP4_BLOCK, quantize_rows


def dynamic_mxfp4_quant(x: torch.Tensor, scaling_mode: str = "even") -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, N] (BF16/FP16/FP32) -> (x_fp4 uint8 [M, N/2], blockscale_e8m0 uint8 [M, ceil(N/32)]).

    Bit-exact with aiter's Triton kernel (tests/test_aiter_reference.py replays it under TRITON_INTERPRET=1).
    The scale tensor is a transposed view of a [ceil(N/32), M] buffer, as aiter allocates it (quant.py:152-156).
    """
    if scaling_mode != "even":
        raise NotImplementedError(f"aiter reference kernels (harness): dynamic_mxfp4_quant scaling_mode={scaling_mode!r}")
    if x.dim() != 2:
        raise ValueError(f"dynamic_mxfp4_quant takes a 2-D tensor, as aiter's does (quant.py:143), got {tuple(x.shape)}")
    m, n = x.shape
    assert (n // 2) % 2 == 0  # aiter's own precondition (quant.py:145)
    x_fp4, scales = quantize_rows(x)
    blockscale = torch.empty(((n + MXFP4_BLOCK - 1) // MXFP4_BLOCK, m), dtype=torch.uint8, device=x.device).T
    blockscale.copy_(scales)
    return x_fp4.contiguous(), blockscale
