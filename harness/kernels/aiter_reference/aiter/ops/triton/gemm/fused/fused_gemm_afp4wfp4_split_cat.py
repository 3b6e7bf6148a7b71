"""aiter.ops.triton.gemm.fused.fused_gemm_afp4wfp4_split_cat, reference: refused.

SGLang 0.5.17 reaches it only from ROCm model code (a 5-tuple input to QuarkW4A4MXFP4.apply_weights, built by
DeepSeek's MLA path under `_is_hip`); the reference raises rather than guess its layout."""

from aiter._harness import not_implemented

fused_gemm_afp4wfp4_split_cat = not_implemented("aiter.ops.triton.gemm.fused.fused_gemm_afp4wfp4_split_cat")
