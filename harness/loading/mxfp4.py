"""A reference OCP MX FP4 (MXFP4) implementation in torch, bit-exact with amd-quark's export.

Format (OCP Microscaling spec): blocks of 32 values along the last axis share one E8M0 scale
(2^(e-127); 0xFF is NaN); each value is E2M1 (sign, 2 exponent bits, 1 mantissa bit: magnitudes
0, 0.5, 1, 1.5, 2, 3, 4, 6). Two values per byte: element 2i in the low nibble, 2i+1 in the high
nibble, the order Quark and aiter use. The scale rule is amd-quark's "even" mode: round the block's
|max| at its second mantissa bit, then take 2^(floor(log2) - 2) (2 = E2M1's largest exponent); values
round to nearest, ties to even, as in its export (config `round_method: half_even`).
Works on CPU and GPU tensors alike; torch is imported by callers, never at harness start-up.
"""

from __future__ import annotations

import torch

BLOCK = 32
E2M1_EMAX = 2
E8M0_BIAS = 127
E8M0_NAN = 0xFF
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _blocks(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] % BLOCK:
        raise ValueError(f"MXFP4 needs the last dimension to be a multiple of {BLOCK}, got {x.shape[-1]}")
    return x.float().reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)


def scale_exponents(x: torch.Tensor) -> torch.Tensor:
    """The unbiased shared exponent of each block of 32 (int32, in [-127, 127])."""
    amax = _blocks(x).abs().amax(dim=-1)
    # Round |max| at the bit below E2M1's one mantissa bit ("even" mode), keeping only the exponent.
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


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., n] -> (packed uint8 [..., n/2], E8M0 scales uint8 [..., n/32])."""
    exponents = scale_exponents(x)
    scales = torch.exp2(exponents.float())
    codes = _to_e2m1_codes(_blocks(x) / scales.unsqueeze(-1)).reshape(*x.shape)
    return pack(codes), (exponents + E8M0_BIAS).to(torch.uint8)


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
    """(packed [..., n/2], E8M0 scales [..., n/32]) -> values [..., n]."""
    values = decode(unpack(packed))
    factor = torch.exp2(scales.float() - E8M0_BIAS)
    factor = torch.where(scales == E8M0_NAN, torch.full_like(factor, float("nan")), factor)
    blocks = values.reshape(*values.shape[:-1], values.shape[-1] // BLOCK, BLOCK) * factor.unsqueeze(-1)
    return blocks.reshape(values.shape).to(dtype)
