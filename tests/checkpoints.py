"""Tiny synthetic checkpoints: real config.json and real safetensors files whose tensors are zeros.

Only headers matter to preflight, so data is written as holes (sparse files): a header set of any
size costs almost no disk.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from harness.loading.safetensors import DTYPE_BYTES


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        handle.truncate(8 + len(blob) + offset)  # the data as a hole


def write_checkpoint(root: Path, config: dict, tensors: dict[str, tuple[str, tuple[int, ...]]],
                     shards: int = 1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    names = list(tensors)
    if shards == 1:
        write_safetensors(root / "model.safetensors", tensors)
        return root
    weight_map = {}
    for index in range(shards):
        shard = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[index::shards]}
        write_safetensors(root / shard, part)
        weight_map.update(dict.fromkeys(part, shard))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return root


def qwen3_next_fp8(root: Path, *, v_heads: int = 16) -> Path:
    """Qwen3-Next-style FP8 (block 128): in_proj_ba / in_proj_qkvz kept in BF16 and listed as not converted."""
    hidden, tensors = 512, {}
    for layer in range(2):
        p = f"model.layers.{layer}"
        tensors[f"{p}.linear_attn.in_proj_ba.weight"] = ("BF16", (2 * v_heads, hidden))
        tensors[f"{p}.linear_attn.in_proj_qkvz.weight"] = ("BF16", (1024, hidden))
        tensors[f"{p}.linear_attn.out_proj.weight"] = ("F8_E4M3", (hidden, 512))
        tensors[f"{p}.linear_attn.out_proj.weight_scale_inv"] = ("F32", (4, 4))
        for name in ("gate_proj", "up_proj"):
            tensors[f"{p}.mlp.{name}.weight"] = ("F8_E4M3", (1024, hidden))
            tensors[f"{p}.mlp.{name}.weight_scale_inv"] = ("F32", (8, 4))
        tensors[f"{p}.mlp.down_proj.weight"] = ("F8_E4M3", (hidden, 1024))
        tensors[f"{p}.mlp.down_proj.weight_scale_inv"] = ("F32", (4, 8))
        tensors[f"{p}.input_layernorm.weight"] = ("BF16", (hidden,))
    tensors["model.embed_tokens.weight"] = ("BF16", (1000, hidden))
    tensors["lm_head.weight"] = ("BF16", (1000, hidden))
    not_converted = [f"{root_}layers.{i}.linear_attn.{name}" for root_ in ("", "model.") for i in range(2)
                     for name in ("in_proj_ba", "in_proj_qkvz")]
    config = {"architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "hidden_size": hidden,
              "num_hidden_layers": 2, "linear_num_value_heads": v_heads,
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                      "weight_block_size": [128, 128], "modules_to_not_convert": not_converted}}
    return write_checkpoint(root, config, tensors)


def glm5_mxfp4(root: Path, *, mtp_excluded: bool, eh_proj_packed: bool, hidden: int = 64) -> Path:
    """GLM-5-style (DeepSeek-V3 keys) Quark MXFP4 checkpoint with one MTP (NextN) layer, model.layers.2."""
    tensors = {}
    for layer in range(3):
        p = f"model.layers.{layer}"
        tensors[f"{p}.mlp.down_proj.weight"] = ("U8", (hidden, hidden))
        tensors[f"{p}.mlp.down_proj.weight_scale"] = ("U8", (hidden, 2 * hidden // 32))
    if eh_proj_packed:
        tensors["model.layers.2.eh_proj.weight"] = ("U8", (hidden, hidden))
        tensors["model.layers.2.eh_proj.weight_scale"] = ("U8", (hidden, 2 * hidden // 32))
    else:
        tensors["model.layers.2.eh_proj.weight"] = ("BF16", (hidden, 2 * hidden))
    exclude = ["lm_head"] + (["re:model\\.layers\\.2\\..*"] if mtp_excluded else [])
    config = {"architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa", "hidden_size": hidden,
              "num_hidden_layers": 2, "num_nextn_predict_layers": 1,
              "quantization_config": {"quant_method": "quark", "exclude": exclude,
                                      "global_quant_config": {"weight": {"dtype": "fp4", "group_size": 32}}}}
    return write_checkpoint(root, config, tensors)


def eagle3_mla_draft(root: Path, *, architecture: str = "Eagle3DeepseekV2ForCausalLM", q_lora_rank: int | None = 64,
                     input_width: int | None = None, model_type: str = "kimi_k2", hidden: int = 128) -> Path:
    kv_lora_rank, rope = 32, 16
    width = 2 * hidden if input_width is None else input_width
    config = {"architectures": [architecture], "model_type": model_type, "hidden_size": hidden,
              "kv_lora_rank": kv_lora_rank, "qk_rope_head_dim": rope, "num_hidden_layers": 1}
    if q_lora_rank is not None:
        config["q_lora_rank"] = q_lora_rank
    out = (q_lora_rank or 0) + kv_lora_rank + rope
    tensors = {"midlayer.self_attn.fused_qkv_a_proj_with_mqa.weight": ("BF16", (out, width)),
               "midlayer.hidden_norm.weight": ("BF16", (hidden,))}
    return write_checkpoint(root, config, tensors)


def kimi_k26_mxfp4(root: Path, *, exclude: list[str], kv_a_packed: bool = False, hidden: int = 128) -> Path:
    """KimiK25-style wrapper (language_model.*) with MLA attention, Quark MXFP4, two layers."""
    tensors = {"language_model.lm_head.weight": ("BF16", (1000, hidden))}
    for layer in range(2):
        p = f"language_model.model.layers.{layer}.self_attn"
        tensors[f"{p}.q_a_proj.weight"] = ("BF16", (64, hidden))
        if kv_a_packed:
            tensors[f"{p}.kv_a_proj_with_mqa.weight"] = ("U8", (48, hidden // 2))
            tensors[f"{p}.kv_a_proj_with_mqa.weight_scale"] = ("U8", (48, hidden // 32))
        else:
            tensors[f"{p}.kv_a_proj_with_mqa.weight"] = ("BF16", (48, hidden))
        tensors[f"{p}.o_proj.weight"] = ("U8", (hidden, 64))
        tensors[f"{p}.o_proj.weight_scale"] = ("U8", (hidden, 4))
    config = {"architectures": ["KimiK25ForConditionalGeneration"], "model_type": "kimi_k25",
              "text_config": {"model_type": "kimi_k2", "hidden_size": hidden, "num_hidden_layers": 2},
              "quantization_config": {"quant_method": "quark", "exclude": exclude}}
    return write_checkpoint(root, config, tensors)


def qwen3(root: Path, *, layers: int = 36, hidden: int = 4096, intermediate: int = 12288, heads: int = 32,
          kv_heads: int = 8, head_dim: int = 128, vocab: int = 151936, experts: int = 0,
          moe_intermediate: int = 768, mxfp4: bool = False, shards: int = 4) -> Path:
    """Qwen3 (dense, Qwen3-8B's shapes by default) or Qwen3-MoE (`experts` > 0) with real config keys;
    `mxfp4` stores every linear but lm_head and the router as Quark MXFP4 (packed uint8 + E8M0 scales)."""
    def linear(name: str, out_features: int, in_features: int, quantizable: bool = True) -> None:
        if mxfp4 and quantizable:
            tensors[f"{name}.weight"] = ("U8", (out_features, in_features // 2))
            tensors[f"{name}.weight_scale"] = ("U8", (out_features, in_features // 32))
        else:
            tensors[f"{name}.weight"] = ("BF16", (out_features, in_features))

    tensors: dict[str, tuple[str, tuple[int, ...]]] = {"model.embed_tokens.weight": ("BF16", (vocab, hidden)),
                                                         "model.norm.weight": ("BF16", (hidden,))}
    for layer in range(layers):
        p = f"model.layers.{layer}"
        linear(f"{p}.self_attn.q_proj", heads * head_dim, hidden)
        linear(f"{p}.self_attn.k_proj", kv_heads * head_dim, hidden)
        linear(f"{p}.self_attn.v_proj", kv_heads * head_dim, hidden)
        linear(f"{p}.self_attn.o_proj", hidden, heads * head_dim)
        tensors[f"{p}.self_attn.q_norm.weight"] = ("BF16", (head_dim,))
        tensors[f"{p}.self_attn.k_norm.weight"] = ("BF16", (head_dim,))
        tensors[f"{p}.input_layernorm.weight"] = ("BF16", (hidden,))
        tensors[f"{p}.post_attention_layernorm.weight"] = ("BF16", (hidden,))
        if experts:
            linear(f"{p}.mlp.gate", experts, hidden, quantizable=False)
            for expert in range(experts):
                e = f"{p}.mlp.experts.{expert}"
                linear(f"{e}.gate_proj", moe_intermediate, hidden)
                linear(f"{e}.up_proj", moe_intermediate, hidden)
                linear(f"{e}.down_proj", hidden, moe_intermediate)
        else:
            linear(f"{p}.mlp.gate_proj", intermediate, hidden)
            linear(f"{p}.mlp.up_proj", intermediate, hidden)
            linear(f"{p}.mlp.down_proj", hidden, intermediate)
    linear("lm_head", vocab, hidden, quantizable=False)
    config = {"architectures": ["Qwen3MoeForCausalLM" if experts else "Qwen3ForCausalLM"],
              "model_type": "qwen3_moe" if experts else "qwen3", "hidden_size": hidden,
              "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "head_dim": head_dim, "vocab_size": vocab,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    if experts:
        config.update(num_experts=experts, num_experts_per_tok=8, moe_intermediate_size=moe_intermediate)
    if mxfp4:
        config["quantization_config"] = {
            "quant_method": "quark", "export": {"pack_method": "reorder"},
            "global_quant_config": {"weight": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32,
                                               "scale_format": "e8m0"}},
            "exclude": ["lm_head", "re:.*mlp.gate$"]}
    return write_checkpoint(root, config, tensors, shards=shards)


def qwen3_30b_a3b(root: Path, **overrides) -> Path:
    """Qwen/Qwen3-30B-A3B-Instruct-2507's shapes: 48 layers, 128 experts of 768, hidden 2048, 4 KV heads."""
    shape = dict(layers=48, hidden=2048, intermediate=6144, heads=32, kv_heads=4, experts=128, moe_intermediate=768,
                 shards=16)
    return qwen3(root, **{**shape, **overrides})
