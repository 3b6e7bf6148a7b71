"""The values of the matrix axes that carry meaning: quantization kinds and speculative kinds.

Each kind says what it asks of the checkpoint and of the server; engines turn that into flags.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantKind:
    name: str
    description: str
    # The engine's --quantization value, or None where the engine detects it from the
    # checkpoint's quantization_config (SGLang does this for pre-quantized checkpoints).
    server_quantization: str | None
    online: bool = False
    # SGLang's code for it calls aiter (the Quark MXFP4 schemes), which exists only on ROCm; elsewhere the
    # reference kernels (harness.kernels.selection) stand in for it.
    needs_aiter: bool = False


QUANT_KINDS: dict[str, QuantKind] = {
    kind.name: kind
    for kind in (
        QuantKind("bf16", "unquantized BF16 checkpoint", None),
        QuantKind("fp8", "pre-quantized FP8 checkpoint (HF fp8, block scales)", None),
        QuantKind("quark-fp8", "pre-quantized Quark FP8 checkpoint", None),
        QuantKind("quark-mxfp4", "pre-quantized Quark MXFP4 checkpoint (OCP MX FP4, E8M0 scales)", None,
                  needs_aiter=True),
        QuantKind("mxfp4", "MXFP4 MoE weights (--quantization mxfp4)", "mxfp4"),
        # For engines without MXFP4 kernels (vLLM's CPU path): the numerics of MXFP4 weights, served as BF16.
        QuantKind("fq-mxfp4", "BF16 checkpoint of MXFP4 fake-quantized weights (quantized, dequantized, stored)",
                  None),
        QuantKind(
            "quark_mxfp4",
            "online MXFP4 while loading a BF16/FP8/NVFP4 checkpoint (--quantization quark_mxfp4, gfx95x)",
            "quark_mxfp4",
            online=True,
            needs_aiter=True,
        ),
    )
}


@dataclass(frozen=True)
class SpecKind:
    name: str
    # SGLang's --speculative-algorithm value; None means no speculative decoding.
    algorithm: str | None
    needs_draft: bool


SPEC_KINDS: dict[str, SpecKind] = {
    kind.name: kind
    for kind in (
        SpecKind("none", None, needs_draft=False),
        SpecKind("mtp", "NEXTN", needs_draft=False),  # the MTP layer lives in the target checkpoint
        SpecKind("eagle3", "EAGLE3", needs_draft=True),
        SpecKind("eagle", "EAGLE", needs_draft=True),
        # Drafts from n-grams of the prompt and the text so far: a real accept length with no draft model.
        SpecKind("ngram", "NGRAM", needs_draft=False),
    )
}

# The usual "3-1-4" chain that SGLang's EAGLE tests and the AMD nightly use.
DEFAULT_EAGLE_PARAMS = {"num_steps": 3, "eagle_topk": 1, "num_draft_tokens": 4}
