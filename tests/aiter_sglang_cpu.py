"""SGLang 0.5.17's own Quark MXFP4 code on CPU, through harness's reference aiter and its hook.

`build(root)` writes a `sglang` package tree under root holding SGLang's real files from the pinned wheel
(the two Quark MXFP4 scheme modules and the aiter MoE runner, unchanged) and, around them, the smallest stubs
of the SGLang modules they import (no torch distributed, no CUDA, no sgl_kernel). A fresh interpreter with
PYTHONPATH = reference folder, root imports them: the hook binds the scheme modules as on a server.
`SCRIPT` then runs them and prints, as JSON, how their outputs compare with float64 references.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

REAL = (
    "sglang/srt/layers/quantization/quark/schemes/quark_w4a4_mxfp4.py",
    "sglang/srt/layers/quantization/quark/schemes/quark_w4a4_mxfp4_moe.py",
    "sglang/srt/layers/moe/moe_runner/aiter.py",
)

STUBS = {
    "sglang/srt/utils/__init__.py": """
import os
def is_hip(): return False  # an NVIDIA or CPU machine: what the hook is for
def is_gfx95_supported(): return False
def get_bool_env_var(name, default="false"): return os.environ.get(name, default).lower() in ("1", "true")
def get_int_env_var(name, default=0): return int(os.environ.get(name, default))
def set_weight_attrs(weight, attrs):
    for key, value in (attrs or {}).items():
        setattr(weight, key, value)
""",
    "sglang/srt/utils/common.py": """
def mxfp_supported(): return False
def direct_register_custom_op(*args, **kwargs):
    raise AssertionError("only reached under _is_hip")
""",
    "sglang/srt/environ.py": """
class _Flag:
    def __init__(self, value): self.value = value
    def get(self): return self.value
class envs:
    SGLANG_USE_AITER_MOE_GU_ITLV = _Flag(True)
""",
    "sglang/srt/layers/parameter.py": """
import torch
class _Param(torch.nn.Parameter):
    def __new__(cls, data, weight_loader=None, **kwargs):
        param = super().__new__(cls, data, requires_grad=False)
        param.weight_loader = weight_loader
        return param
PackedvLLMParameter = GroupQuantScaleParameter = _Param
""",
    "sglang/srt/layers/quantization/__init__.py": "class QuantizationConfig: pass\n",
    "sglang/srt/layers/quantization/base_config.py": "from sglang.srt.layers.quantization import QuantizationConfig\n",
    "sglang/srt/layers/quantization/dequantization.py": """
def copy_missing_attrs(*args): raise AssertionError("FP8 requantization is not under test")
def dequantize_fp8(*args, **kwargs): raise AssertionError("FP8 requantization is not under test")
""",
    "sglang/srt/layers/quantization/fp8.py": "class Fp8Config: pass\nclass Fp8LinearMethod: pass\nclass Fp8MoEMethod: pass\n",
    "sglang/srt/layers/quantization/online_quantization.py": "class CopyNumelCounter: pass\n",
    "sglang/srt/layers/quantization/quark/schemes/__init__.py": "class QuarkLinearScheme: pass\nclass QuarkMoEScheme: pass\n",
    "sglang/srt/layers/moe/__init__.py": """
from sglang.srt.layers.moe.moe_runner.base import MoeRunnerConfig
from sglang.srt.layers.moe.utils import MoeRunnerBackend
class MoeRunner:
    '''SGLang's MoeRunner for the standard dispatcher and the aiter backend: pre-permute, core, post-permute.'''
    def __init__(self, backend, config):
        from sglang.srt.layers.moe.moe_runner import aiter
        self.config, self.aiter = config, aiter
        self.core = aiter.AiterRunnerCore(config)
    def run(self, dispatch_output, quant_info):
        state = {}
        runner_input = self.aiter.pre_permute_standard_to_aiter(dispatch_output, quant_info, self.config, state)
        output = self.core.run(runner_input, quant_info, state)
        return self.aiter.post_permute_aiter_to_standard(output, quant_info, self.config, state)
""",
    "sglang/srt/layers/moe/utils.py": """
from enum import Enum
class MoeRunnerBackend(Enum):
    AUTO = "auto"
    AITER = "aiter"
    TRITON = "triton"
    def is_auto(self): return self is MoeRunnerBackend.AUTO
    def is_aiter(self): return self is MoeRunnerBackend.AITER
class MoeA2ABackend(Enum):
    NONE = "none"
    def supports_aiter(self): return self is MoeA2ABackend.NONE  # 0.5.17: NONE, DEEPEP, MOONCAKE, NIXL, MORI
def get_moe_runner_backend(): return MoeRunnerBackend.AUTO  # the server default
def get_moe_a2a_backend(): return MoeA2ABackend.NONE  # no expert-parallel all-to-all
def get_moe_weight_sizes(*args, **kwargs): raise AssertionError("create_weights is not under test")
""",
    "sglang/srt/layers/moe/moe_runner/__init__.py": "",
    "sglang/srt/layers/moe/moe_runner/base.py": """
from dataclasses import dataclass
from typing import Optional
@dataclass
class MoeRunnerConfig:
    num_experts: Optional[int] = None
    num_local_experts: Optional[int] = None
    top_k: Optional[int] = None
    activation: str = "silu"
    apply_router_weight_on_input: bool = False
    no_combine: bool = False
    gemm1_alpha: Optional[float] = None
    gemm1_clamp_limit: Optional[float] = None
class MoeQuantInfo: pass
class RunnerInput: pass
class RunnerOutput: pass
class MoeRunnerCore:
    def __init__(self, config): self.config = config
def register_pre_permute(*names): return lambda function: function
def register_post_permute(*names): return lambda function: function
""",
    "sglang/srt/layers/moe/token_dispatcher/__init__.py": "",
    "sglang/srt/layers/moe/token_dispatcher/standard.py": """
from typing import NamedTuple
import torch
class StandardCombineInput(NamedTuple):
    hidden_states: torch.Tensor
class StandardDispatchOutput(NamedTuple):
    hidden_states: torch.Tensor
    hidden_states_scale: object
    topk_output: tuple
""",
}


def build(root: Path, wheel: Path) -> Path:
    """The package tree under root: SGLang's real files from the wheel, the stubs around them."""
    with zipfile.ZipFile(wheel) as archive:
        files = {member: archive.read(member).decode() for member in REAL}
    files |= {path: text.lstrip("\n") for path, text in STUBS.items()}
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for directory in {p for path in files for p in (root / path).parents if root in p.parents}:
        (directory / "__init__.py").touch(exist_ok=True)
    return root


def float64_moe(x, w13, w13_scales, w2, w2_scales, weights, ids, hip_quant_dequant):
    """The BF16 dequant reference of a per_1x32 MoE: weights dequantized by harness's amd-quark reference,
    products in float64; the activations quantized as aiter's fused MoE does (its rounding is part of what is
    served) and the stage-1 output rounded to BF16 (its buffer's dtype). Returns the sums and the sums of
    |terms| (for accumulation bounds). `hip_quant_dequant` is the reference aiter's (aiter._harness)."""
    import torch

    from harness.loading import mxfp4 as quark

    inter = w2.shape[2] * 2
    w13_f, w2_f = quark.dequantize(w13, w13_scales, torch.float64), quark.dequantize(w2, w2_scales, torch.float64)
    a1 = hip_quant_dequant(x).double()
    exact = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float64)
    magnitude = torch.zeros_like(exact)
    for t in range(x.shape[0]):
        for k in range(ids.shape[1]):
            e = int(ids[t, k])
            gate_up = a1[t] @ w13_f[e].T
            act = (torch.nn.functional.silu(gate_up[:inter]) * gate_up[inter:]).to(torch.bfloat16)
            a2 = hip_quant_dequant(act.unsqueeze(0)).double()[0]
            exact[t] += float(weights[t, k]) * (a2 @ w2_f[e].T)
            magnitude[t] += float(weights[t, k]) * (a2.abs() @ w2_f[e].abs().T)
    return exact, magnitude


def within_rounding(y, exact, magnitude, k: int) -> dict:
    """How far y (an fp32 sum of k terms rounded once to y's dtype) is from the exact sum, against the bound
    one rounding (eps * |exact|) plus fp32 accumulation (k * eps32 * sum of |terms|)."""
    import torch

    bound = torch.finfo(y.dtype).eps * exact.abs() + k * torch.finfo(torch.float32).eps * magnitude
    error = (y.double() - exact).abs()
    return {"outputs": y.numel(), "max_abs_error": float(error.max()),
            "max_error_over_bound": float((error / bound).max()), "within": bool((error <= bound).all())}


SCRIPT = r"""
import json, sys
import torch
sys.path.insert(0, sys.argv[1])  # harness's MXFP4 reference (amd-quark bit-exact) and the tests' helpers
from harness.loading import mxfp4 as quark
from sglang.srt.layers.quantization.quark.schemes import quark_w4a4_mxfp4 as dense_module
from sglang.srt.layers.quantization.quark.schemes import quark_w4a4_mxfp4_moe as moe_module
from sglang.srt.layers.moe import MoeRunnerConfig
from sglang.srt.layers.moe.token_dispatcher.standard import StandardDispatchOutput
from aiter import _harness
import sitecustomize
from tests.aiter_sglang_cpu import float64_moe, within_rounding

torch.set_default_dtype(torch.bfloat16)  # SGLang's out_dtype is the default dtype (quark_w4a4_mxfp4.py:175)
generator = torch.Generator().manual_seed(20261205)
report = {"bound": sitecustomize.bound}


# Dense: QuarkW4A4MXFP4, create_weights -> a real amd-quark-style export loaded -> process -> apply_weights.
scheme = dense_module.QuarkW4A4MXFP4({"qscheme": "per_group"}, {"qscheme": "per_group", "is_dynamic": True})
layer = torch.nn.Module()
out_features, in_features, tokens = 96, 256, 7
scheme.create_weights(layer, [64, 32], in_features, torch.bfloat16, weight_loader=None)
weight = (torch.randn(out_features, in_features, generator=generator) * 0.05).to(torch.bfloat16)
packed, scales = quark.quantize(weight)
layer.weight.data.copy_(packed)
layer.weight_scale.data.copy_(scales)
scheme.process_weights_after_loading(layer)
report["dense_weights_kept"] = bool(torch.equal(layer.weight.data, packed) and torch.equal(layer.weight_scale.data, scales))
x = (torch.randn(2, tokens, in_features, generator=generator) * 3).to(torch.bfloat16)
y = scheme.apply_weights(layer, x, bias=None)
x_q, x_s = _harness.quantize_rows(x.reshape(-1, in_features))
a = quark.dequantize(x_q, x_s, torch.float64)
b = quark.dequantize(packed, scales, torch.float64)
report["dense_shape"] = list(y.shape)
report["dense"] = within_rounding(y.reshape(-1, out_features), a @ b.T, a.abs() @ b.abs().T, in_features)

# MoE: QuarkW4A4MXFp4MoE's process_weights_after_loading (its e8m0_shuffle of the scales), then its apply_weights
# through SGLang's aiter runner (pre-permute, AiterRunnerCore.run, post-permute) into the reference fused_moe.
experts, hidden, inter, top_k, tokens = 8, 256, 128, 2, 9
moe = moe_module.QuarkW4A4MXFp4MoE({"qscheme": "per_group"}, {"qscheme": "per_group", "is_dynamic": True})
layer = torch.nn.Module()
w13 = (torch.randn(experts, 2 * inter, hidden, generator=generator) * 0.05).to(torch.bfloat16)
w2 = (torch.randn(experts, hidden, inter, generator=generator) * 0.05).to(torch.bfloat16)
w13_q, w13_s = quark.quantize(w13)
w2_q, w2_s = quark.quantize(w2)
for name, value in (("w13_weight", w13_q), ("w2_weight", w2_q), ("w13_weight_scale", w13_s), ("w2_weight_scale", w2_s)):
    layer.register_parameter(name, torch.nn.Parameter(value.clone(), requires_grad=False))
moe.process_weights_after_loading(layer)
report["moe_scales_shuffled"] = not torch.equal(layer.w13_weight_scale.data.reshape(-1)[: w13_s.numel()], w13_s.reshape(-1))
layer.dispatcher = type("Dispatcher", (), {"expert_mask_gpu": None})()
moe.create_moe_runner(layer, MoeRunnerConfig(num_experts=experts, num_local_experts=experts, top_k=top_k))
hidden_states = torch.randn(tokens, hidden, generator=generator).to(torch.bfloat16)
weights, ids = torch.softmax(torch.randn(tokens, experts, generator=generator), -1).topk(top_k, -1)
dispatch = StandardDispatchOutput(hidden_states, None, (weights, ids, None))
out = moe.apply_weights(layer, dispatch).hidden_states

exact, magnitude = float64_moe(hidden_states, w13_q, w13_s, w2_q, w2_s, weights, ids, _harness.hip_quant_dequant)
report["moe_shape"] = list(out.shape)
report["moe"] = within_rounding(out, exact, magnitude, hidden + inter)
print(json.dumps(report))
"""
