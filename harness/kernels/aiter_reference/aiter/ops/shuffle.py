"""aiter.ops.shuffle, reference: refused. SGLang 0.5.17's MXFP4 MoE shuffles its weights only on gfx95
(quark_w4a4_mxfp4_moe.py:37, 591-599), where the real aiter serves; the reference fused_moe reads them
unshuffled."""

from aiter._harness import not_implemented

shuffle_weight = not_implemented("aiter.ops.shuffle.shuffle_weight")
