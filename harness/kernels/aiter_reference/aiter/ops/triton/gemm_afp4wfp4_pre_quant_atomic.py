"""aiter.ops.triton.gemm_afp4wfp4_pre_quant_atomic, reference: `gemm_afp4wfp4_pre_quant`
(aiter/ops/triton/gemm_afp4wfp4_pre_quant_atomic.py:19-100; kernel in _triton_kernels/ of the same name)."""

from __future__ import annotations

import torch

from aiter._harness import dequantize, dequantized_weight, quantize_rows


def gemm_afp4wfp4_pre_quant(x, w, w_scales, dtype=torch.bfloat16, y=None, config=None):
    """Y += MXFP4(X) @ W^T: x BF16/FP16 [M, K] is quantized per 32 along K with aiter's own quantizer (the
    kernel calls `_mxfp4_quant_op` on its K tiles), both operands dequantized exactly, accumulated in fp32,
    rounded to y's dtype and added into y (the kernel's `tl.atomic_add`; y is zero-initialised when None)."""
    m, n = x.shape[0], w.shape[0]
    if y is None:
        y = torch.zeros((m, n), dtype=dtype, device=x.device)
    packed, scales = quantize_rows(x)
    product = torch.matmul(dequantize(packed, scales), dequantized_weight(w, w_scales).T)
    y.add_(product.to(y.dtype))
    return y
