"""CPU bodies for the two amd-quark functions vLLM's MXFP4 emulation calls, `quark.torch.kernel.mx.dq_mxfp4`
and `qdq_mxfp4`, taken from amd-quark's own CPU code.

vLLM 0.32 routes every emulated MXFP4 GEMM through two custom ops in
vllm/model_executor/layers/quantization/utils/mxfp4_utils.py: `vllm::dequant_mxfp4` (`_dequant_mxfp4`, line 158:
`mx.dq_mxfp4(x, scale, float_dtype)`) and `vllm::quant_dequant_mxfp4` (`_quant_dequant_mxfp4`, line 181:
`mx.qdq_mxfp4(x, scale_calculation_mode)`). amd-quark 0.13 binds both names to its C++ extension
(quark/torch/kernel/mx/hip.py), whose CPU build throws: quark/torch/kernel/hw_emulation/csrc/
python_function_export.cpp lines 70-83 ("dq_uint8_mxfp4_to_half is only implemented in CUDA devices!",
"qdq_mxfp4 is only implemented in CUDA devices!"). Its other implementation (`QUARK_MXFP4_IMPL=triton`) needs a
Triton GPU backend. So this module wraps the two names: CPU tensors get amd-quark's CPU code, any other tensor
the original.

- dequantize: `upcast_from_mxfp_torch` (quark/torch/kernel/mx/triton.py), amd-quark's torch reference of its
  Triton dequantizer: E2M1 codes (low nibble first) times 2^(byte - 127), exact in BF16.
- quantize-dequantize: `fake_quantize_mx` (quark/torch/kernel/hw_emulation/hw_emulation_interface.py), amd-quark's
  CPU MX fake-quantizer, in the "even" scale mode vLLM asks for (|max| rounded at its second mantissa bit, then
  2^(floor(log2) - 2)) with E2M1 values rounded half to even, the rule of the CUDA kernel vLLM uses on a GPU
  (csrc/mxfp4/fake_kernels.cuh, `qdq_mxfp4_kernel`).

vLLM calls the ops lazily, in the worker process only; importing amd-quark costs ~17 s, so nothing here is
imported before vLLM imports `quark.torch.kernel.mx` itself (`patch_when_imported`, through `hooks`).
"""

from __future__ import annotations

from typing import Any

from harness_vllm_cpu_mxfp4.hooks import after_import

MX_MODULE = "quark.torch.kernel.mx"
BLOCK = 32
# The only scale mode vLLM passes (mxfp4_utils.py `_quant_dequant_mxfp4`'s default) and the only one quark's
# CUDA kernel implements.
SCALE_MODE = "even"


def dequantize(packed, scales, float_dtype):
    """uint8 [..., K/2] (two E2M1 codes a byte, low nibble first) and uint8 E8M0 [..., K/32] -> float [..., K]."""
    from quark.torch.kernel.mx.triton import upcast_from_mxfp_torch

    return upcast_from_mxfp_torch(packed, scales, float_dtype, axis=-1)


def quantize_dequantize(x, scale_calculation_mode: str = SCALE_MODE):
    """x [..., K] -> x through MXFP4 (blocks of 32 along the last axis) and back, in x's dtype."""
    if scale_calculation_mode != SCALE_MODE:
        raise NotImplementedError(f"MXFP4 quantize-dequantize on CPU: scale mode {scale_calculation_mode!r} "
                                  f"(only {SCALE_MODE!r}, the mode of quark's CUDA kernel)")
    from quark.torch.kernel.hw_emulation.hw_emulation_interface import fake_quantize_mx

    return fake_quantize_mx(x.contiguous(), axis=-1, block_size=BLOCK, scale_calculation_mode=SCALE_MODE,
                            mx_element_dtype="fp4")


def patch(mx: Any) -> None:
    """Route CPU tensors of `mx.dq_mxfp4` / `mx.qdq_mxfp4` to the functions above (idempotent)."""
    if getattr(mx, "_harness_cpu_mx", False):
        return
    gpu_dq, gpu_qdq = mx.dq_mxfp4, mx.qdq_mxfp4

    def dq_mxfp4(x, scale, float_dtype):
        return dequantize(x, scale, float_dtype) if x.device.type == "cpu" else gpu_dq(x, scale, float_dtype)

    def qdq_mxfp4(x, scale_calculation_mode: str = SCALE_MODE):
        if x.device.type == "cpu":
            return quantize_dequantize(x, scale_calculation_mode)
        return gpu_qdq(x, scale_calculation_mode)

    mx.dq_mxfp4, mx.qdq_mxfp4 = dq_mxfp4, qdq_mxfp4
    mx._harness_cpu_mx = True


def patch_when_imported() -> None:
    """Patch amd-quark's `mx` module now if it is loaded, else the moment something imports it."""
    after_import(MX_MODULE, patch)
