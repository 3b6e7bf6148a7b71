"""aiter.ops.triton.gemm_afp4wfp4, reference: `gemm_afp4wfp4` (aiter/ops/triton/gemm_afp4wfp4.py:67-190)."""

from __future__ import annotations

import torch

from aiter._harness import dequantize, dequantized_weight


def gemm_afp4wfp4(x, w, x_scales, w_scales, dtype=torch.bfloat16, y=None, config=None):
    """Y = X @ W^T, both MXFP4: x uint8 [M, K/2] with E8M0 x_scales [M, K/32], w uint8 [N, K/2] with
    w_scales [N, K/32]. Both operands are dequantized exactly, multiplied and accumulated in fp32, and the sum
    is rounded once to y's dtype and written into y (allocated as `dtype` when None), as aiter's kernel does
    with `tl.dot_scaled` and `accumulator.to(c_ptr.type.element_ty)`. `config` (tile sizes) is ignored."""
    m, n = x.shape[0], w.shape[0]
    if y is None:
        y = torch.empty((m, n), dtype=dtype, device=x.device)
    product = torch.matmul(dequantize(x, x_scales), dequantized_weight(w, w_scales).T)
    y.copy_(product)
    return y
