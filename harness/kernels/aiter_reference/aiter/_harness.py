"""The MXFP4 arithmetic behind harness's reference `aiter`: aiter's Triton quantizer ported bit for bit, the
E2M1/E8M0 decoding its GEMMs use, and a per-weight cache of dequantized weights.

Everything is plain torch on whatever device the tensors live on: no Triton, no ROCm, no host sync (so a CUDA
graph may capture it). Source of truth: amd-aiter 0.1.7.post2.dev18 (the wheel's Python and Triton sources).
"""

from __future__ import annotations

import os

import torch

MXFP4_BLOCK = 32  # fixed by the OCP MX spec; aiter's MXFP4_QUANT_BLOCK_SIZE
_E8M0_BIAS = 127
_E2M1_BIAS_SHIFT = 126  # E8_BIAS - E2_BIAS in aiter's _mxfp4_quant_op
# aiter/utility/fp4_utils.py:30 (mxfp4_to_f32): code -> value, sign in bit 3.
E2M1_TABLE = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
# A dequantized weight is kept beside its packed form as this attribute (see `cached_dequantization`).
_CACHE_ATTRIBUTE = "_harness_aiter_reference_dequantized"


def _bits(x: torch.Tensor) -> torch.Tensor:
    """fp32 tensor -> its 32 bits as int32. aiter's kernel works on uint32; every step below stays correct in
    two's complement (the sign bit is only ever tested or masked off, and no sum reaches 2^31)."""
    return x.contiguous().view(torch.int32)


def _from_bits(bits: torch.Tensor) -> torch.Tensor:
    """int32 bits -> fp32 with those bits."""
    return bits.to(torch.int32).view(torch.float32)


def _pow2(exponents: torch.Tensor) -> torch.Tensor:
    """2^k in fp32 for integer k in [-127, 127], built from bits (exact; 2^-127 is subnormal: torch.exp2 on
    some backends flushes or rounds it)."""
    k = exponents.to(torch.int32)
    return _from_bits(torch.where(k >= -126, (k + _E8M0_BIAS) << 23, 0x00400000))


_EXPONENT_MASK = -0x800000  # 0xFF800000 as int32: sign and exponent kept, mantissa cleared


def block_exponents(blocks: torch.Tensor) -> torch.Tensor:
    """fp32 [..., n_blocks, 32] -> the unbiased E8M0 exponent of each block, int32 in [-127, 127].

    quant.py:98-104: |max| with 0x200000 added to its bits and the mantissa cleared ("even" rounding at the
    second mantissa bit), then floor(log2) - 2, clamped. log2 of 0 is -inf and of inf is inf: -127 and 127.
    (|max| has no sign bit, so adding 0x200000 cannot overflow int32, NaN's bits included.)
    """
    rounded = (_bits(blocks.abs().amax(dim=-1)) + 0x200000) & _EXPONENT_MASK
    field = (rounded >> 23) & 0xFF
    return torch.where(field == 0, -127, torch.where(field == 0xFF, 127, field - _E8M0_BIAS - 2)).clamp(-127, 127)


def mxfp4_quant_op(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """aiter's `_mxfp4_quant_op` (aiter/ops/triton/_triton_kernels/quant.py:86-162) on fp32 blocks.

    x: fp32 [..., n_blocks, 32] -> (E2M1 codes uint8 [..., n_blocks, 32], E8M0 bytes uint8 [..., n_blocks]).
    Statement for statement, in int32 where the kernel uses uint32. Where the kernel is undefined, this gives
    what its Triton interpreter gives (docs/aiter-reference.md): a right shift by 32 or more (a value below
    2^-32 of its block's scale) yields 0; NaN and inf inputs are not defined by the kernel at all.
    """
    unbiased = block_exponents(x)
    # quant.py:107: `.to(tl.uint8) + 127` wraps modulo 256 (a negative float converts through int32).
    scale_bytes = ((unbiased + _E8M0_BIAS) & 0xFF).to(torch.uint8)
    # quant.py:109-112: multiply by 2^-e in fp32 (one IEEE rounding, subnormals kept).
    q = _bits(x * _pow2(-unbiased).unsqueeze(-1))
    negative, exponent, mantissa = q < 0, (q >> 23) & 0xFF, q & 0x7FFFFF
    # quant.py:137-141: below 1.0 the value becomes an E2M1 subnormal: implicit bit, shifted right.
    shift = _E2M1_BIAS_SHIFT - exponent
    subnormal = torch.where(shift < 32, (0x400000 | (mantissa >> 1)) >> shift.clamp(0, 31), 0)
    mantissa = torch.where(exponent < _E8M0_BIAS, subnormal, mantissa)
    exponent = exponent.clamp(min=_E2M1_BIAS_SHIFT) - _E2M1_BIAS_SHIFT
    # quant.py:145-146: round half up on the bit below E2M1's mantissa, saturate at 0b111 (6.0), keep the sign
    # (`s >> 28` puts the sign bit at bit 3).
    magnitude = ((((exponent << 2) | (mantissa >> 21)) + 1) >> 1).clamp(max=0x7)
    return (torch.where(negative, 0x8, 0) | magnitude).to(torch.uint8), scale_bytes


def shift_widths(x: torch.Tensor) -> torch.Tensor:
    """Per nonzero value of x [M, N], the right shift aiter's kernel applies to make it an E2M1 subnormal
    (quant.py:140-141; 0 for zeros and values at or above 1.0 after scaling). At 32 or more the kernel is
    undefined on hardware (a `>>` by the register width); the port, like the Triton interpreter, gives 0."""
    m, n = x.shape
    values = torch.nn.functional.pad(x.to(torch.float32), (0, -n % MXFP4_BLOCK)).reshape(m, -1, MXFP4_BLOCK)
    exponent = (_bits(values * _pow2(-block_exponents(values)).unsqueeze(-1)) >> 23) & 0xFF
    widths = torch.where((values != 0) & (exponent < _E8M0_BIAS), _E2M1_BIAS_SHIFT - exponent, 0)
    return widths.reshape(m, -1)[:, :n]


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """codes [..., n] -> bytes [..., n/2], element 2i in the low nibble (quant.py:147-151)."""
    pairs = codes.reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """bytes [..., n/2] -> codes [..., n], the inverse of `pack_nibbles`."""
    packed = packed.view(torch.uint8)
    return torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, N] (any float dtype) -> (packed uint8 [M, N/2], E8M0 uint8 [M, ceil(N/32)]), as aiter's
    `_dynamic_mxfp4_quant_kernel` computes them: loaded as fp32, a short last block padded with zeros (its
    masked load), the outputs cut back to N/2 bytes and ceil(N/32) scales (its masked stores)."""
    m, n = x.shape
    values = x.to(torch.float32)
    pad = -n % MXFP4_BLOCK
    if pad:
        values = torch.nn.functional.pad(values, (0, pad))
    codes, scales = mxfp4_quant_op(values.reshape(m, -1, MXFP4_BLOCK))
    return pack_nibbles(codes.reshape(m, -1))[:, : n // 2], scales


# ------------------------------------------------------------------------- the fused MoE's activation quantizer
# aiter's fused_moe quantizes activations with its HIP kernel, not the Triton one above: fused_moe.py:775-786
# and 838-852 call get_hip_quant(per_1x32) = per_1x32_f4_quant_hip (aiter/ops/quant.py:151-165, 250-297), which
# runs `dynamic_per_group_scaled_quant_kernel` (aiter_meta/csrc/kernels/quant_kernels.cu:19-160). aiter's own
# torch mirror of it is `per_1x32_f4_quant` (aiter/ops/quant.py:70-100); the port below is checked against it.
_HIP_ABSMAX_FLOOR = 1e-10  # quant_kernels.cu:87: `float absMax = 1e-10f;`
_E2M1_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def hip_scale_bytes(blocks: torch.Tensor) -> torch.Tensor:
    """fp32 [..., n_blocks, 32] -> E8M0 bytes: quant_kernels.cu:94-104 (`fp4_scale`): |max| (at least 1e-10)
    rounded up to the next power of two when its mantissa is at least one half, times 0.25 (1 / 2^2, E2M1's top
    binade); aiter's torch mirror is `f32_to_e8m0(max_abs / 4)` (fp4_utils.py:47-55)."""
    amax = torch.maximum(blocks.abs().amax(dim=-1), torch.tensor(_HIP_ABSMAX_FLOOR, device=blocks.device))
    bits = _bits(amax)
    exponent = (bits >> 23) & 0xFF
    up = ((bits & 0x400000) != 0) & (((bits & 0x200000) != 0) | ((bits & 0x1FFFFF) != 0) | (exponent != 0))
    exponent = torch.where(exponent == 0xFF, exponent, exponent + up.to(torch.int32))
    return torch.where(exponent >= 0xFF, 0xFF, exponent - 2).clamp(min=0).to(torch.uint8)


def e2m1_round_even(values: torch.Tensor) -> torch.Tensor:
    """fp32 already divided by the scale -> 4-bit codes: round to nearest, ties to the even code, saturate at
    6.0, the sign kept on zeros. aiter's `f32_to_mxfp4` (fp4_utils.py:10-16, torchao's `_f32_to_floatx_unpacked`)
    and the hardware conversion its HIP kernel uses (`ck_tile::vec_convert`) round this way."""
    grid = torch.tensor(_E2M1_GRID, dtype=torch.float32, device=values.device)
    midpoints = (grid[:-1] + grid[1:]) / 2
    magnitude = values.abs()
    codes = torch.bucketize(magnitude, midpoints)  # a tie lands on the lower neighbour
    tie = magnitude == midpoints[codes.clamp(max=len(midpoints) - 1)]
    codes = torch.where(tie & (codes % 2 == 1), codes + 1, codes)
    return (torch.where(values.signbit(), 8, 0) | codes).to(torch.uint8)


def hip_quant_dequant(x: torch.Tensor) -> torch.Tensor:
    """x [R, C] (C a multiple of 32) -> fp32 [R, C]: aiter's fused-MoE activation quantization and the exact
    dequantization its GEMMs multiply by."""
    rows, cols = x.shape
    if cols % MXFP4_BLOCK:
        raise ValueError(f"per_1x32 MoE activations need a width that is a multiple of 32, got {cols}")
    blocks = x.to(torch.float32).reshape(rows, cols // MXFP4_BLOCK, MXFP4_BLOCK)
    scales = e8m0_to_f32(hip_scale_bytes(blocks)).unsqueeze(-1)
    table = torch.tensor(E2M1_TABLE, dtype=torch.float32, device=x.device)
    return (table[e2m1_round_even(blocks / scales).long()] * scales).reshape(rows, cols)


def hip_quant(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [R, C] -> (packed uint8 [R, C/2], E8M0 uint8 [R, C/32]): the same quantization, packed (for tests
    against aiter's torch references, which take packed activations)."""
    rows, cols = x.shape
    blocks = x.to(torch.float32).reshape(rows, cols // MXFP4_BLOCK, MXFP4_BLOCK)
    scale_bytes = hip_scale_bytes(blocks)
    codes = e2m1_round_even(blocks / e8m0_to_f32(scale_bytes).unsqueeze(-1))
    return pack_nibbles(codes.reshape(rows, cols)), scale_bytes


def e8m0_to_f32(scales: torch.Tensor) -> torch.Tensor:
    """E8M0 bytes -> fp32 2^(b-127): aiter/utility/fp4_utils.py:58-66 (e8m0_to_f32): 0 is 2^-127, 0xFF NaN."""
    b = scales.view(torch.uint8).to(torch.int32)
    return _from_bits(torch.where(b == 0, 0x00400000, torch.where(b == 0xFF, 0x7F800001, b << 23)))


def dequantize(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """packed uint8 [..., K/2] and E8M0 [..., >= K/32] -> fp32 [..., K]: each E2M1 value times its block's
    scale, exact (what `tl.dot_scaled` multiplies). Scale columns past K/32 (padding) are ignored."""
    codes = unpack(packed)
    k = codes.shape[-1]
    table = torch.tensor(E2M1_TABLE, dtype=torch.float32, device=packed.device)
    factor = e8m0_to_f32(scales[..., : -(-k // MXFP4_BLOCK)])
    return table[codes.long()] * factor.repeat_interleave(MXFP4_BLOCK, dim=-1)[..., :k]


CACHE_SETTING = "HARNESS_AITER_REFERENCE_CACHE"  # "dense" (default), "all" (experts too) or "off"


def cache_enabled(kind: str) -> bool:
    """Whether dequantized weights of this kind ("dense" or "moe") are kept (docs/aiter-reference.md, Memory)."""
    setting = os.environ.get(CACHE_SETTING, "dense")
    return setting == "all" or (setting == "dense" and kind == "dense")


def _capturing(t: torch.Tensor) -> bool:
    return t.is_cuda and torch.cuda.is_current_stream_capturing()


def cached_dequantization(w: torch.Tensor, scales: torch.Tensor, kind: str, compute) -> torch.Tensor:
    """`compute()` (the dequantization of packed weight w with its scales), cached in BF16 on the weight itself
    where `kind` is cached (exact: an E2M1 value times a power of two has at most 2 significant bits and BF16
    has fp32's exponent range) and recomputed whenever the weight or its scales change (their version
    counters and storage). Returned in BF16 where cached, else in fp32: exact either way, `.float()` at use.

    The cache lives on the tensor SGLang passes (a view's base where it passes a dtype view), so it dies with
    the weight; it costs 2 bytes per weight element, 3.8x the packed weight and its scales."""
    owner = w._base if w._base is not None else w
    key = (w.data_ptr(), tuple(w.shape), owner._version, scales.data_ptr(), scales._version, tuple(scales.shape))
    cached = getattr(owner, _CACHE_ATTRIBUTE, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    values = compute()
    if cache_enabled(kind) and not _capturing(w):
        values = values.to(torch.bfloat16)
        setattr(owner, _CACHE_ATTRIBUTE, (key, values))
    return values


def dequantized_weight(w: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """A dense GEMM's weight [N, K/2] with scales [N, K/32], dequantized to fp32 (cached: `cached_dequantization`)."""
    return cached_dequantization(w, scales, "dense", lambda: dequantize(w, scales)).float()


def not_implemented(symbol: str):
    """A stand-in for an aiter symbol SGLang's MXFP4 paths reach but the reference does not provide."""

    def refuse(*_args, **_kwargs):
        raise NotImplementedError(f"aiter reference kernels (harness): {symbol} is not implemented; only "
                                  "the calls of SGLang's MXFP4 dense and per_1x32 MoE paths are (docs/aiter-reference.md)")

    refuse.__name__ = symbol.rsplit(".", 1)[-1]
    refuse.__qualname__ = refuse.__name__
    return refuse
