"""aiter.utility.fp4_utils, reference: `e8m0_shuffle` (aiter/utility/fp4_utils.py:72-92) and its inverse."""

from __future__ import annotations

import torch

# aiter's tiling: rows padded to 256, columns to 8, then viewed [rows/32, 2, 16, cols/8, 2, 4] and permuted
# (0, 3, 5, 2, 4, 1) (fp4_utils.py:79-91).
_ROW_PAD, _COL_PAD = 256, 8
_TILE = (2, 16, 2, 4)
_PERMUTE = (0, 3, 5, 2, 4, 1)
_INVERSE = tuple(_PERMUTE.index(axis) for axis in range(6))


def e8m0_shuffle(scale):
    """aiter's layout of E8M0 scales for its MoE kernels, padding included: [m, n] -> [ceil256(m), ceil8(n)].

    aiter leaves the padding uninitialised (torch.empty); here it is 0, so the result is deterministic. fp32
    scales and None pass through, as in aiter."""
    if scale is None or scale.dtype == torch.float32:
        return scale
    assert scale.ndim == 2, "scale must be a 2D tensor"
    m, n = scale.shape
    padded = torch.zeros((m + _ROW_PAD - 1) // _ROW_PAD * _ROW_PAD, (n + _COL_PAD - 1) // _COL_PAD * _COL_PAD,
                         dtype=scale.dtype, device=scale.device)
    padded[:m, :n] = scale
    sm, sn = padded.shape
    return padded.view(sm // 32, 2, 16, sn // 8, 2, 4).permute(*_PERMUTE).contiguous().view(sm, sn)


def e8m0_unshuffle(shuffled: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The exact inverse of `e8m0_shuffle`: the [rows, cols] scales it was given, padding dropped."""
    sm, sn = shuffled.shape
    if sm % _ROW_PAD or sn % _COL_PAD or rows > sm or cols > sn:
        raise ValueError(f"[{sm}, {sn}] is not e8m0_shuffle's output for [{rows}, {cols}] scales")
    tiles = shuffled.reshape(sm // 32, sn // 8, 4, 16, 2, 2).permute(*_INVERSE)
    return tiles.reshape(sm, sn)[:rows, :cols]
