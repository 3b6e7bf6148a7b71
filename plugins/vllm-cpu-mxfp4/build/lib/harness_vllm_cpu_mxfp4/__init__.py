"""vLLM general plugin: vLLM's own MXFP4 emulation kernel, listed for the CPU platform.

vLLM 0.32's `_POSSIBLE_MXFP4_KERNELS` (vllm/model_executor/kernels/linear/__init__.py) lists
`EmulationMxfp4LinearKernel` for CUDA and ROCm only, so on the CPU platform `init_mxfp4_linear_kernel` finds no
candidate and raises "Failed to find a kernel that can implement the MXFP4 linear layer" while a Quark MXFP4
checkpoint's layers are built. The kernel itself is platform-free (its `is_supported` is unconditionally true;
it dequantizes the packed weight and quantize-dequantizes the activations with amd-quark's `mx` kernels, then
calls `F.linear`), and `register_linear_kernel` is vLLM's public hook for adding one. Nothing else changes:
registration appends to the CPU list, which was empty, so only layers that failed before are affected.

The MoE side needs no registration: `QuarkOCP_MX_MoEMethod` falls back to `Mxfp4MoeBackend.EMULATION` by
itself when no native backend is found.

vLLM calls `register` in every process it starts (API server, engine core, workers); it must be idempotent.
"""

from __future__ import annotations


def register() -> None:
    from vllm.platforms import PlatformEnum, current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.kernels import linear
    from vllm.model_executor.kernels.linear import EmulationMxfp4LinearKernel

    # A private table, read only to stay idempotent: `register_linear_kernel` appends unconditionally.
    if EmulationMxfp4LinearKernel not in linear._POSSIBLE_MXFP4_KERNELS.get(PlatformEnum.CPU, []):
        linear.register_linear_kernel(EmulationMxfp4LinearKernel, PlatformEnum.CPU, "mxfp4")
