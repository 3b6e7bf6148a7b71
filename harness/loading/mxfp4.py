"""A reference OCP MX FP4 (MXFP4) implementation in torch, bit-exact with amd-quark 0.13's export.

Format (OCP Microscaling spec): blocks of 32 values along the last axis share one E8M0 scale
(2^(e-127); 0xFF is NaN); each value is E2M1 (sign, 2 exponent bits, 1 mantissa bit: magnitudes
0, 0.5, 1, 1.5, 2, 3, 4, 6). Two values per byte: element 2i in the low nibble, 2i+1 in the high
nibble, the order Quark and aiter use. The scale rule is amd-quark's "even" mode: round the block's
|max| at its second mantissa bit, then take 2^(floor(log2) - 2) (2 = E2M1's largest exponent); values
round to nearest, ties to even, as in its export (config `round_method: half_even`).

Quark's export path (ModelQuantizer, freeze, export_safetensors) adds three rules of its own, each
mirrored below where it applies and checked against Quark's real export on awkward inputs
(tests/golden/mxfp4/, made by tests/mxfp4_goldens.py): the scale byte never goes below 1, a value whose
dequantization overflows the weight's dtype is written as ±4.0, and an input dim that is not a multiple
of 32 is padded with zeros. `quantize` takes the weight in the checkpoint's own dtype (BF16, FP16, FP32):
the overflow rule depends on it.
Works on CPU and GPU tensors alike; torch is imported by callers, never at harness start-up.
"""

from __future__ import annotations

import torch

BLOCK = 32
E2M1_EMAX = 2
E8M0_BIAS = 127
E8M0_NAN = 0xFF
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Quark converts its float scale to the byte through `safe_log2`, which clamps at 2^-126 (FP32's
# smallest normal) to keep log2(0) finite: a block whose exponent is -127 (every all-zero block, and any
# block with |max| < 1.75 * 2^-125) is written with byte 1, not 0, while its values were already
# quantized against 2^-127. Nonzero values in such blocks (all below 5e-38) read back doubled.
QUARK_MIN_SCALE_BYTE = 1
# The magnitude code Quark writes for a value that became inf (see `_quark_overflow`): its packer reads the
# bits of inf / 2^126 and finds 0b110 where E2M1's magnitude sits, i.e. 4.0.
QUARK_INF_CODE = 6


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """x [..., n] as fp32 blocks [..., ceil(n/32), 32]; a short last block is padded with zeros, as Quark's
    export does (its importer cannot read such a weight back: it expects n/32 scales)."""
    if x.shape[-1] % 2:
        raise ValueError(f"MXFP4 packs two values per byte: the last dimension must be even, got {x.shape[-1]}")
    if not x.is_floating_point():
        raise ValueError(f"MXFP4 quantizes floating-point weights, got {x.dtype}")
    if not torch.isfinite(x).all():
        # MXFP4 has no inf or NaN element; Quark's export writes garbage for them (inf: scale byte 254 and
        # code 4.0 whatever the block; NaN: every code -6.0), so a reference has nothing to agree with.
        raise ValueError("MXFP4 cannot encode inf or NaN weights")
    pad = -x.shape[-1] % BLOCK
    values = torch.nn.functional.pad(x.float(), (0, pad))
    return values.reshape(*x.shape[:-1], values.shape[-1] // BLOCK, BLOCK)


def scale_exponents(x: torch.Tensor) -> torch.Tensor:
    """The unbiased shared exponent each block of 32 is quantized against (int32, in [-127, 127])."""
    amax = _blocks(x).abs().amax(dim=-1)
    # Round |max| at the bit below E2M1's one mantissa bit ("even" mode), keeping only the exponent.
    # At |max| >= 1.75 * 2^127 the rounding carries into an exponent of all ones (inf): log2 gives inf and
    # the clamp below makes it 127, as in Quark's `even_round`.
    rounded = ((amax.view(torch.int32) + 0x200000) & 0x7F800000).view(torch.float32)
    rounded = torch.where(rounded == 0, torch.full_like(rounded, 2.0 ** -126), rounded)
    return (torch.log2(rounded).floor() - E2M1_EMAX).clamp(-127, 127).to(torch.int32)


def _to_e2m1_codes(values: torch.Tensor) -> torch.Tensor:
    """fp32 values already divided by their scale -> 4-bit codes (sign << 3 | magnitude code).

    As amd-quark's export: round to nearest with ties to the even code (1.25 -> 1.0, 2.5 -> 2.0,
    5.0 -> 4.0), saturate at 6.0, and write a value that rounds to zero as +0 whatever its sign.
    """
    grid = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=values.device)
    midpoints = (grid[:-1] + grid[1:]) / 2
    magnitude = values.abs()
    codes = torch.bucketize(magnitude, midpoints)  # a tie lands on the lower neighbour
    tie = magnitude == midpoints[codes.clamp(max=len(midpoints) - 1)]
    codes = torch.where(tie & (codes % 2 == 1), codes + 1, codes)
    signs = torch.where((values < 0) & (codes != 0), 8, 0)
    return (signs | codes).to(torch.uint8)


def _quark_overflow(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Codes as Quark writes them when a dequantized value overflows the weight's dtype.

    Quark's `freeze` replaces the weight by its quantize-dequantize in the weight's dtype, and the export
    quantizes that again against the same scales. Both agree except where code * scale overflows: with a
    scale of 2^127 (|max| >= 1.75 * 2^127 in BF16/FP32), 2.0 * 2^127 is inf, and inf is written as 4.0.
    """
    overflow = torch.isinf((decode(codes) * scales.unsqueeze(-1)).to(dtype))
    return torch.where(overflow, (codes & 0x8) | QUARK_INF_CODE, codes)


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., n] (n even) -> (packed uint8 [..., n/2], E8M0 scales uint8 [..., ceil(n/32)])."""
    exponents = scale_exponents(x)
    scales = torch.exp2(exponents.float())
    codes = _quark_overflow(_to_e2m1_codes(_blocks(x) / scales.unsqueeze(-1)), scales, x.dtype)
    codes = codes.reshape(*x.shape[:-1], -1)[..., : x.shape[-1]]
    scale_bytes = (exponents + E8M0_BIAS).clamp(min=QUARK_MIN_SCALE_BYTE).to(torch.uint8)
    return pack(codes), scale_bytes


def pack(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes [..., n] -> bytes [..., n/2], element 2i in the low nibble."""
    pairs = codes.to(torch.uint8).reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """bytes [..., n/2] -> 4-bit codes [..., n]."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def decode(codes: torch.Tensor) -> torch.Tensor:
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    magnitude = table[(codes & 0x7).long()]
    return torch.where((codes & 0x8) != 0, -magnitude, magnitude)


def dequantize(packed: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(packed [..., n/2], E8M0 scales [..., ceil(n/32)]) -> values [..., n], each E2M1 value times its
    block's 2^(byte-127) in fp32, rounded once to `dtype` (bit-exact with Quark's importer in fp32)."""
    values = decode(unpack(packed))
    n = values.shape[-1]
    factor = torch.exp2(scales.float() - E8M0_BIAS)
    factor = torch.where(scales == E8M0_NAN, torch.full_like(factor, float("nan")), factor)
    if factor.shape[-1] * BLOCK < n or (factor.shape[-1] - 1) * BLOCK >= n:
        raise ValueError(f"{factor.shape[-1]} scales do not cover {n} values in blocks of {BLOCK}")
    per_value = factor.repeat_interleave(BLOCK, dim=-1)[..., :n]
    return (values * per_value).to(dtype)
