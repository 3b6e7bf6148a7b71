"""Fake-quantized checkpoints: `python -m harness.local.fakequant SRC OUT [--defect NAME]`.

Every linear weight amd-quark's template quantizes (attention and MLP projections and the MoE experts of
each decoder layer; never the embeddings, norms, routers `mlp.gate` or `lm_head`) goes through harness's
reference MXFP4 (harness.loading.mxfp4: quantize, then dequantize) and is stored back in BF16. An engine
that cannot run MXFP4 kernels (vLLM's CPU path) then serves exactly the weights an MXFP4 kernel would
multiply by, so the numerics eval sees quantization's damage without a quantized engine path.

A defect edits the E8M0 scales between quantize and dequantize, as a loader or kernel bug in scale
handling would:
- `scale`: every scale of `model.layers.0.mlp.down_proj` one exponent too high (the planted defect of
  the local suite, here on a fake-quantized checkpoint);
- `sparse-scale`: one block in every SPARSE_STRIDE of `model.layers.1.mlp.down_proj` one exponent too
  high (a subtle defect: a strided scale read that is off in a few blocks).
Deterministic: the same source gives byte-identical tensors on every machine (integer arithmetic on
exponents, exact power-of-two scaling).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# Names of the weights MXFP4 applies to: decoder-layer projections and experts (fused 3-D or per expert).
QUANTIZED = re.compile(r"^model\.layers\.\d+\.(self_attn\.[qkvo]_proj\.weight|mlp\.(gate|up|down)_proj\.weight"
                       r"|mlp\.experts\..*(gate_up_proj|down_proj|gate_proj|up_proj)(\.weight)?)$")
SPARSE_STRIDE = 16


@dataclass(frozen=True)
class ScaleDefect:
    tensor: str
    stride: int  # every stride-th block of 32 (in row-major block order) gets its exponent raised by one
    description: str


DEFECTS = {
    "scale": ScaleDefect("model.layers.0.mlp.down_proj.weight", 1,
                         "every E8M0 scale of model.layers.0.mlp.down_proj one exponent too high"),
    "sparse-scale": ScaleDefect("model.layers.1.mlp.down_proj.weight", SPARSE_STRIDE,
                                f"one block in {SPARSE_STRIDE} of model.layers.1.mlp.down_proj one exponent "
                                f"too high"),
}


def is_quantized(name: str) -> bool:
    return QUANTIZED.match(name) is not None


def raise_scales(scales, stride: int):
    """E8M0 scales with every stride-th one (flattened order) one exponent higher, capped below NaN (0xFF)."""
    import torch

    flat = scales.reshape(-1).to(torch.int32)
    picked = torch.zeros_like(flat, dtype=torch.bool)
    picked[::stride] = True
    raised = torch.where(picked, (flat + 1).clamp(max=254), flat)
    return raised.to(torch.uint8).reshape(scales.shape)


def fake_quantize_tensor(weight, defect: ScaleDefect | None = None):
    """BF16 weight -> MXFP4 (blocks of 32 along the input dimension) -> BF16, with the defect's scale edit."""
    import torch

    from harness.loading import mxfp4

    packed, scales = mxfp4.quantize(weight)
    if defect is not None:
        scales = raise_scales(scales, defect.stride)
    return mxfp4.dequantize(packed, scales, dtype=torch.float32).to(torch.bfloat16)


def fake_quantize(source: Path, out: Path, defect_name: str | None = None) -> dict:
    """Write OUT: SRC with every MXFP4-eligible weight fake-quantized (and the defect applied)."""
    from safetensors.torch import load_file, save_file

    defect = DEFECTS[defect_name] if defect_name else None
    tensors = load_file(str(source / "model.safetensors"))
    if defect is not None and defect.tensor not in tensors:
        raise SystemExit(f"{source}: no tensor {defect.tensor} for the '{defect_name}' defect")
    changed = []
    for name in sorted(tensors):
        if is_quantized(name):
            tensors[name] = fake_quantize_tensor(tensors[name], defect if defect and name == defect.tensor else None)
            changed.append(name)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("model.safetensors", "training.json"))
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    summary = {"source": str(source), "scheme": "mxfp4-fake-quant", "quantized_tensors": len(changed),
               "defect": None if defect is None else {"name": defect_name, "tensor": defect.tensor,
                                                      "stride": defect.stride, "description": defect.description}}
    (tmp / "fake_quant.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a half-written checkpoint never looks cached
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--defect", choices=sorted(DEFECTS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(json.dumps(fake_quantize(args.source, args.out, args.defect)))


if __name__ == "__main__":
    main()
