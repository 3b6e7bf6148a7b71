"""Kernels harness puts in front of an engine's own: today the pure-torch `aiter` reference package.

`aiter_reference_path()` is the folder a server's PYTHONPATH gets first for a cell that asks for reference
kernels: it holds the `aiter` package (the calls SGLang 0.5.17's MXFP4 dense and MoE paths make, in torch)
and the `sitecustomize` hook that hands SGLang's two Quark MXFP4 scheme modules what they define only on
ROCm. See docs/aiter-reference.md. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

_AITER_REFERENCE = Path(__file__).resolve().parent / "aiter_reference"


def aiter_reference_path() -> str:
    """The PYTHONPATH entry (put it first) that makes `import aiter` the reference package and installs the hook."""
    return str(_AITER_REFERENCE)
