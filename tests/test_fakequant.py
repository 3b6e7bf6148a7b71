"""Fake-quantized checkpoints: which weights, MXFP4's exact values, the scale defects, the cache key."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.loading import mxfp4
from harness.local import fakequant, models


@pytest.mark.parametrize("name, quantized", [
    ("model.layers.0.self_attn.q_proj.weight", True),
    ("model.layers.11.mlp.down_proj.weight", True),
    ("model.layers.0.mlp.experts.3.gate_proj.weight", True),
    ("model.layers.0.mlp.experts.gate_up_proj", True),  # transformers 5's fused experts
    ("model.layers.0.mlp.gate.weight", False),  # the router stays in high precision, as in Quark's template
    ("model.layers.0.self_attn.q_norm.weight", False),
    ("model.embed_tokens.weight", False),
    ("lm_head.weight", False),
])
def test_the_weights_quark_quantizes(name, quantized):
    assert fakequant.is_quantized(name) is quantized


def test_a_fake_quantized_weight_is_mxfp4_dequantized_exactly():
    weight = (torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 0.05).to(torch.bfloat16)
    packed, scales = mxfp4.quantize(weight)
    assert torch.equal(fakequant.fake_quantize_tensor(weight), mxfp4.dequantize(packed, scales).to(torch.bfloat16))
    # Every value is an E2M1 value times its block's power of two: quantizing again changes nothing.
    again = fakequant.fake_quantize_tensor(fakequant.fake_quantize_tensor(weight))
    assert torch.equal(again, fakequant.fake_quantize_tensor(weight))


def test_the_sparse_defect_doubles_every_stride_th_block_only():
    weight = (torch.randn(4, 128, generator=torch.Generator().manual_seed(1)) * 0.05).to(torch.bfloat16)
    clean = fakequant.fake_quantize_tensor(weight).float().reshape(16, 32)
    defect = fakequant.ScaleDefect("w", 5, "test")
    broken = fakequant.fake_quantize_tensor(weight, defect).float().reshape(16, 32)
    doubled = [i for i in range(16) if torch.equal(broken[i], clean[i] * 2)]
    same = [i for i in range(16) if torch.equal(broken[i], clean[i])]
    assert doubled == [0, 5, 10, 15] and len(same) == 12
    assert fakequant.raise_scales(torch.tensor([254, 253], dtype=torch.uint8), 1).tolist() == [254, 254]  # 255 = NaN


def test_checkpoints_are_written_whole_and_described(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    generator = torch.Generator().manual_seed(2)
    tensors = {"model.layers.0.mlp.down_proj.weight": torch.randn(32, 64, generator=generator).to(torch.bfloat16),
               "model.layers.0.mlp.gate.weight": torch.randn(4, 64, generator=generator).to(torch.bfloat16),
               "lm_head.weight": torch.randn(8, 64, generator=generator).to(torch.bfloat16)}
    save_file(tensors, str(source / "model.safetensors"))
    (source / "config.json").write_text("{}")
    (source / "training.json").write_text("{}")
    summary = fakequant.fake_quantize(source, tmp_path / "out", "scale")
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert summary["quantized_tensors"] == 1 and summary["defect"]["tensor"] == "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(written["lm_head.weight"], tensors["lm_head.weight"])
    assert torch.equal(written["model.layers.0.mlp.gate.weight"], tensors["model.layers.0.mlp.gate.weight"])
    assert torch.equal(written["model.layers.0.mlp.down_proj.weight"],
                       fakequant.fake_quantize_tensor(tensors["model.layers.0.mlp.down_proj.weight"]) * 2)
    assert (tmp_path / "out" / "config.json").exists() and not (tmp_path / "out" / "training.json").exists()
    assert json.loads((tmp_path / "out" / "fake_quant.json").read_text()) == summary
    assert not (tmp_path / "out.partial").exists()


def test_fake_quant_checkpoints_are_keyed_by_the_code_that_made_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    path = models.resolve("local:tiny-qwen3-moe/fq-mxfp4-sparse-scale-defect")
    assert path.name == (f"tiny-qwen3-moe-{models.source_digest('tiny-qwen3-moe')}-fq-mxfp4-sparse-scale-defect-"
                         f"{models.fake_quant_code_digest()}")
    assert models.parse("local:tiny-qwen3-moe/bf16") == ("tiny-qwen3-moe", "bf16")
