"""A pure-torch stand-in for amd-aiter, shipped by harness: exactly the calls SGLang 0.5.17's MXFP4 dense
(Quark W4A4 MXFP4 linear) and per_1x32 W4A4 MoE paths make, so that SGLang's own code runs on any GPU.

Not the real aiter: a name SGLang imports elsewhere is absent (so its `try: from aiter import ...` fallbacks
stay as they are), and a name on these paths that is not implemented raises NotImplementedError naming it.
Importing this package imports nothing heavy; the kernels import torch. See docs/aiter-reference.md.
"""

HARNESS_REFERENCE = True
