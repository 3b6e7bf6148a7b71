"""A pure-torch stand-in for amd-aiter, shipped by harness: exactly the calls SGLang 0.5.17's MXFP4 dense
(Quark W4A4 MXFP4 linear) and per_1x32 W4A4 MoE paths make, so that SGLang's own code runs on any GPU.

Not the real aiter: a name SGLang imports elsewhere is absent (so its `try: from aiter import ...` fallbacks
stay as they are), and a name on these paths that is not implemented raises NotImplementedError naming it.
Importing this package imports nothing heavy; the kernels import torch. See docs/aiter-reference.md.
"""

from enum import IntEnum

HARNESS_REFERENCE = True


class QuantType(IntEnum):
    """aiter's QuantType (aiter_meta/csrc/include/aiter_enum.h:12-20, built by aiter/ops/enum.py). SGLang
    looks members up by name (moe_runner/aiter.py:112-115: "No", "per_Token", "per_128x128", "per_1x32")."""

    No = 0
    per_Tensor = 1
    per_Token = 2
    per_1x32 = 3
    per_1x128 = 4
    per_128x128 = 5


class ActivationType(IntEnum):
    """aiter's ActivationType (aiter_enum.h:5-11), plus Situv2, which SGLang 0.5.17 names for its "situ"
    activation (moe_runner/aiter.py:94-98) and a newer aiter defines; its value here is a placeholder."""

    No = -1
    Silu = 0
    Gelu = 1
    Swiglu = 2
    Situv2 = 3
