"""aiter.fused_moe, reference: `fused_moe` for per_1x32 W4A4 (MXFP4 weights and activations) with SiLU.

What SGLang 0.5.17 calls (moe/moe_runner/aiter.py:198-217, AiterRunnerCore.run), computed as aiter's two-stage
path does it (aiter/fused_moe.py:731-908, fused_moe_2stages) and as its torch references spell it out
(torch_moe_stage1 / torch_moe_stage2, fused_moe.py:1057-1240):
1. the tokens are quantized to MXFP4 per 32 with the HIP quantizer's rounding (fused_moe.py:775-780);
2. per routed (token, expert): x @ w13[e]^T in fp32, w13 holding the gate rows then the up rows; silu(gate) * up
   in fp32, stored in the output dtype (the stage-1 buffer a2 is `dtype`, fused_moe.py:798-802);
3. that intermediate quantized to MXFP4 again (fused_moe.py:838-846), @ w2[e]^T in fp32;
4. times the fp32 top-k weight, summed over the top-k in fp32, rounded once to the output dtype.
Weights are dequantized exactly (E2M1 value times 2^(e-127)); their scales come from SGLang shuffled by
`e8m0_shuffle` and are unshuffled here with the true width. Experts are taken one at a time, dequantized on
the fly unless HARNESS_AITER_REFERENCE_CACHE=all keeps them all in BF16 (3.8x the MXFP4 expert weights);
finding the experts in use syncs with the host, so this path is not CUDA-graph capturable.
"""

from __future__ import annotations

import torch

from aiter import ActivationType, QuantType
from aiter._harness import MXFP4_BLOCK, cache_enabled, cached_dequantization, dequantize, hip_quant_dequant
from aiter.utility.fp4_utils import e8m0_unshuffle

_SYMBOL = "aiter.fused_moe.fused_moe"


def _refuse(what: str) -> None:
    raise NotImplementedError(f"aiter reference kernels (harness): {_SYMBOL} with {what} is not implemented; only "
                              "per_1x32 W4A4 with SiLU, as SGLang's Quark MXFP4 MoE calls it (docs/aiter-reference.md)")


def fused_moe(hidden_states, w1, w2, topk_weight, topk_ids, expert_mask=None, activation=ActivationType.Silu,
              quant_type=QuantType.No, doweight_stage1=False, w1_scale=None, w2_scale=None, a1_scale=None,
              a2_scale=None, block_size_M=None, num_local_tokens=None, moe_sorting_dispatch_policy=0, dtype=None,
              hidden_pad=0, intermediate_pad=0, bias1=None, bias2=None, **unsupported):
    """hidden_states [T, H] -> [T, H] in `dtype` (default: hidden_states'), aiter's signature
    (fused_moe.py:87-112). w1 [E, 2I, H/2] and w2 [E, H, I/2] packed MXFP4 (uint8 or float4_e2m1fn_x2),
    w1_scale / w2_scale their E8M0 scales as e8m0_shuffle left them; topk_ids [T, k] (global expert ids
    when expert_mask [global E] marks the local ones), topk_weight [T, k]."""
    _check_supported(quant_type, activation, doweight_stage1, a1_scale, a2_scale, num_local_tokens, hidden_pad,
                     intermediate_pad, bias1, bias2, unsupported)
    dtype = hidden_states.dtype if dtype is None else dtype
    experts, inter2, hidden = w1.shape[0], w1.shape[1], w1.shape[2] * 2
    inter = w2.shape[2] * 2
    if inter2 != 2 * inter or w2.shape[1] != hidden or hidden_states.shape[1] != hidden:
        raise ValueError(f"{_SYMBOL}: w1 {tuple(w1.shape)} and w2 {tuple(w2.shape)} are not a gated MoE over "
                         f"hidden size {hidden_states.shape[1]}")
    weight1 = _ExpertWeights(w1, w1_scale, experts, inter2, hidden)
    weight2 = _ExpertWeights(w2, w2_scale, experts, hidden, inter)
    local_ids = _local_ids(topk_ids, experts, expert_mask)
    tokens, topk = local_ids.shape
    a1 = hip_quant_dequant(hidden_states)
    a2 = torch.zeros((tokens, topk, inter), dtype=dtype, device=hidden_states.device)
    used = [int(e) for e in torch.unique(local_ids[local_ids >= 0]).tolist()]
    for e in used:
        rows, slots = torch.nonzero(local_ids == e, as_tuple=True)
        gate_up = a1[rows] @ weight1[e].T
        a2[rows, slots] = (torch.nn.functional.silu(gate_up[:, :inter]) * gate_up[:, inter:]).to(dtype)
    a2 = hip_quant_dequant(a2.reshape(tokens * topk, inter)).reshape(tokens, topk, inter)
    out = torch.zeros((tokens, topk, hidden), dtype=torch.float32, device=hidden_states.device)
    for e in used:
        rows, slots = torch.nonzero(local_ids == e, as_tuple=True)
        out[rows, slots] = a2[rows, slots] @ weight2[e].T
    return (out * topk_weight.to(torch.float32).unsqueeze(-1)).sum(dim=1).to(dtype)


def _check_supported(quant_type, activation, doweight_stage1, a1_scale, a2_scale, num_local_tokens, hidden_pad,
                     intermediate_pad, bias1, bias2, unsupported) -> None:
    if quant_type != QuantType.per_1x32:
        _refuse(f"quant_type={QuantType(quant_type).name}")
    if activation != ActivationType.Silu:
        _refuse(f"activation={ActivationType(activation).name}")
    given = {"doweight_stage1": bool(doweight_stage1), "a1_scale": a1_scale is not None,
             "a2_scale": a2_scale is not None, "num_local_tokens": num_local_tokens is not None,
             "hidden_pad": bool(hidden_pad), "intermediate_pad": bool(intermediate_pad),
             "bias1": bias1 is not None, "bias2": bias2 is not None, **{name: True for name in unsupported}}
    for name, present in given.items():
        if present:
            _refuse(name)


class _ExpertWeights:
    """One expert's weight in fp32, on demand: from the BF16 cache of all experts where HARNESS_AITER_REFERENCE_CACHE
    is "all", else dequantized alone (then only the experts in use cost time, one expert's memory at a time)."""

    def __init__(self, packed, shuffled_scales, experts: int, rows: int, width: int):
        self.packed, self.scales = packed, _unshuffled(shuffled_scales, experts, rows, width)
        self.all = None
        if cache_enabled("moe"):
            self.all = cached_dequantization(packed, shuffled_scales, "moe", lambda: dequantize(packed, self.scales))

    def __getitem__(self, expert: int) -> torch.Tensor:
        if self.all is not None:
            return self.all[expert].float()
        return dequantize(self.packed[expert], self.scales[expert])


def _unshuffled(scale: torch.Tensor, experts: int, rows: int, width: int) -> torch.Tensor:
    """SGLang's shuffled [E, rows, padded cols] scales (quark_w4a4_mxfp4_moe.py:579-587) -> [E, rows, width/32]."""
    true_rows, true_cols = experts * rows, width // MXFP4_BLOCK
    padded_rows, padded_cols = -(-true_rows // 256) * 256, -(-true_cols // 8) * 8
    if scale.numel() != padded_rows * padded_cols:
        raise ValueError(f"{_SYMBOL}: {tuple(scale.shape)} scales are not e8m0_shuffle's layout of "
                         f"[{true_rows}, {true_cols}]")
    flat = scale.view(torch.uint8).reshape(padded_rows, padded_cols)
    return e8m0_unshuffle(flat, true_rows, true_cols).reshape(experts, rows, true_cols)


def _local_ids(topk_ids: torch.Tensor, experts: int, expert_mask) -> torch.Tensor:
    """Each slot's local expert, -1 where it has none. As aiter's torch_moe (fused_moe.py:1005-1008): with an
    expert mask, ids index `cumsum(mask) - 1` (-1 where the mask is 0); without one, ids outside [0, E) are
    dropped. SGLang routes invalid slots (-1) to a sink id whose mask entry is 0 (moe_runner/aiter.py:381-389)."""
    ids = topk_ids.to(torch.int64)
    if expert_mask is None:
        return torch.where((ids >= 0) & (ids < experts), ids, -1)
    mask = expert_mask.to(torch.int64)
    local = torch.where(mask != 0, torch.cumsum(mask, 0) - 1, -1)
    return local[ids]
