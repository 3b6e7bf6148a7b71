"""Which kernels serve a cell's quantized layers, chosen per cell and recorded with every figure.

`native`: the engine's own kernels (on ROCm, SGLang's MXFP4 path calls the real aiter). `aiter-reference`:
harness's pure-torch reference implementations of exactly the aiter calls SGLang 0.5.17's MXFP4 path makes
(harness/kernels/aiter_reference), put first on the server's PYTHONPATH with a `sitecustomize` hook, so that
SGLang's own MXFP4 code runs on GPUs without aiter. The two compute the same MXFP4 arithmetic by different
kernels and hold weights differently, so a figure measured with one is never gated against a baseline measured
with the other (harness.compare). A result or baseline that records no kernels (the imported figures, measured
on ROCm) counts as native.
"""

from __future__ import annotations

from pathlib import Path

from harness.engine_specs import ENGINES as ENGINE_SPECS
from harness.kernels import aiter_reference_path

NATIVE = "native"
AITER_REFERENCE = "aiter-reference"
KERNELS = (NATIVE, AITER_REFERENCE)
# The engines whose code the reference kernels stand in for (EngineSpec.calls_aiter: a transformers or vLLM
# server never imports aiter).
ENGINES = {AITER_REFERENCE: tuple(name for name, spec in ENGINE_SPECS.items() if spec.calls_aiter)}
AITER_REFERENCE_DIR = Path(aiter_reference_path())
HOOK_FILE = "sitecustomize.py"


def kernels_of(recorded: object) -> str:
    """The kernels a stored result, cell or baseline records; nothing recorded means native."""
    return recorded if isinstance(recorded, str) and recorded in KERNELS else NATIVE


def pythonpath_entries(kernels: str) -> tuple[str, ...]:
    """What goes first on the server's PYTHONPATH for these kernels (the reference package and its hook)."""
    return (str(AITER_REFERENCE_DIR),) if kernels == AITER_REFERENCE else ()


def mismatch(measured: str, baseline: str) -> str | None:
    """Why a figure measured with `measured` kernels cannot be gated against a baseline of `baseline` kernels,
    or None when it can."""
    if measured == baseline:
        return None
    return (f"measured with {measured} kernels, the baseline with {baseline} kernels: the figures come from "
            f"different kernels and are not compared (measure a baseline with the same kernels)")
