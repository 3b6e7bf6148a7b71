"""Quark exports of the tiny model: `python -m harness.local.export --scheme mxfp4|fp8 SRC OUT`.

Runs amd-quark (an optional extra; `import quark.torch` costs ~17 s, so it is imported only here, in
the process that exports) with its qwen3_moe template: lm_head and the routers (`*.gate`) stay in
high precision, as in SGLang's online MXFP4. The output is the real Quark format: config.json
`quantization_config` (quant_method "quark"), packed uint8 FP4 weights with uint8 E8M0 scales for
MXFP4, FP8 E4M3 weights with scales for FP8.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

SCHEMES = {"mxfp4": "mxfp4", "fp8": "fp8"}


def calibration_batches(tokenizer, count: int = 8, batch_size: int = 8):
    """A few batches of training-style prompts: FP8's static activation scales need them."""
    import torch

    from harness.local import problems

    rows = problems.train_rows(count * batch_size)
    texts = ["Question: " + r["question"] + "\nAnswer: " + r["answer"] for r in rows]
    batches = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True)
        batches.append(encoded["input_ids"])
    return torch.utils.data.DataLoader(batches, batch_size=None)  # type: ignore[arg-type]  # torch's stub wants a Dataset; a list is one at run time (__getitem__, __len__)


def export(source: Path, out: Path, scheme: str) -> Path:
    import torch
    from quark.torch import LLMTemplate, ModelQuantizer, export_safetensors
    from quark.torch.utils.llm.model_preparation import preprocess_for_quantization
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()
    # transformers 5 keeps MoE experts as fused 3-D parameters; quark quantizes nn.Linear, so the experts
    # are split into one Linear per expert first (the MoE path is what this model exists to exercise).
    preprocess_for_quantization(model)
    config = LLMTemplate.get(model.config.model_type).get_config(scheme=SCHEMES[scheme])
    quantizer = ModelQuantizer(config)
    with torch.no_grad():
        model = quantizer.quantize_model(model, calibration_batches(tokenizer))
        model = quantizer.freeze(model)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    export_safetensors(model, tmp, custom_mode="quark")
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a half-written export never looks cached
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scheme", choices=sorted(SCHEMES), required=True)
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    out = export(args.source, args.out, args.scheme)
    config = json.loads((out / "config.json").read_text())
    print(json.dumps({"out": str(out), "quant_method": config["quantization_config"]["quant_method"]}))


if __name__ == "__main__":
    main()
