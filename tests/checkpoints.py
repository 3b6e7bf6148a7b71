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


def _fp8_linear(tensors: dict, name: str, out_features: int, in_features: int, dtype: str = "F8_E4M3") -> None:
    tensors[f"{name}.weight"] = (dtype, (out_features, in_features))
    if dtype == "F8_E4M3":
        tensors[f"{name}.weight_scale_inv"] = ("F32", (-(-out_features // 128), -(-in_features // 128)))


def qwen3_next_fp8(root: Path, *, skip_linear_attention: bool = True, layers: int = 4, experts: int = 4,
                   moe_intermediate: int = 512) -> Path:
    """Qwen3-Next-80B-A3B-FP8's shapes (hidden 2048; 32 value / 16 key heads of 128; full attention every 4th
    layer with 16 heads of 256 and a gated query, 2 KV heads; experts and shared expert of 512; block 128),
    fewer layers and experts. The unified in_proj_ba / in_proj_qkvz stay BF16, listed as not converted."""
    hidden, tensors = 2048, {}
    for layer in range(layers):
        p = f"model.layers.{layer}"
        if layer % 4 == 3:
            _fp8_linear(tensors, f"{p}.self_attn.q_proj", 16 * 256 * 2, hidden)
            _fp8_linear(tensors, f"{p}.self_attn.k_proj", 2 * 256, hidden)
            _fp8_linear(tensors, f"{p}.self_attn.v_proj", 2 * 256, hidden)
            _fp8_linear(tensors, f"{p}.self_attn.o_proj", hidden, 16 * 256)
        else:
            dtype = "BF16" if skip_linear_attention else "F8_E4M3"
            _fp8_linear(tensors, f"{p}.linear_attn.in_proj_qkvz", 2 * 2048 + 2 * 4096, hidden, dtype)
            _fp8_linear(tensors, f"{p}.linear_attn.in_proj_ba", 2 * 32, hidden, dtype)
            _fp8_linear(tensors, f"{p}.linear_attn.out_proj", hidden, 4096)
            tensors[f"{p}.linear_attn.conv1d.weight"] = ("BF16", (8192, 1, 4))
            tensors[f"{p}.linear_attn.A_log"] = ("F32", (32,))
        for expert in range(experts):
            for name, shape in (("gate_proj", (moe_intermediate, hidden)), ("up_proj", (moe_intermediate, hidden)),
                                ("down_proj", (hidden, moe_intermediate))):
                _fp8_linear(tensors, f"{p}.mlp.experts.{expert}.{name}", *shape)
        for name, shape in (("gate_proj", (512, hidden)), ("up_proj", (512, hidden)), ("down_proj", (hidden, 512))):
            _fp8_linear(tensors, f"{p}.mlp.shared_expert.{name}", *shape)
        tensors[f"{p}.mlp.gate.weight"] = ("BF16", (512, hidden))
        tensors[f"{p}.mlp.shared_expert_gate.weight"] = ("BF16", (1, hidden))
        tensors[f"{p}.input_layernorm.weight"] = ("BF16", (hidden,))
    tensors["model.embed_tokens.weight"] = ("BF16", (151936, hidden))
    tensors["lm_head.weight"] = ("BF16", (151936, hidden))
    not_converted = ["lm_head", "model.embed_tokens"] + [
        f"{root_}layers.{i}.{name}" for root_ in ("", "model.") for i in range(layers)
        for name in ("mlp.gate", "mlp.shared_expert_gate")
        + (("linear_attn.in_proj_ba", "linear_attn.in_proj_qkvz") if skip_linear_attention and i % 4 != 3 else ())]
    config = {"architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
              "linear_num_value_heads": 32, "linear_num_key_heads": 16, "linear_key_head_dim": 128,
              "linear_value_head_dim": 128, "num_experts": experts, "moe_intermediate_size": moe_intermediate,
              "shared_expert_intermediate_size": 512,
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                      "weight_block_size": [128, 128], "modules_to_not_convert": not_converted}}
    return write_checkpoint(root, config, tensors)


def small_mla_fp8(root: Path, *, q_lora_rank: int = 64, heads: int = 1) -> Path:
    """A small FP8 (block 128) MLA model without MoE whose column- and row-parallel linears have single outputs
    smaller than a block (q_b_proj 96 wide): SGLang checks such layers only where TP splits them."""
    hidden, tensors = 64, {}
    for layer in range(2):
        a = f"model.layers.{layer}.self_attn"
        tensors[f"{a}.q_a_proj.weight"] = ("BF16", (q_lora_rank, hidden))
        tensors[f"{a}.kv_a_proj_with_mqa.weight"] = ("BF16", (32 + 16, hidden))
        _fp8_linear(tensors, f"{a}.q_b_proj", heads * 96, q_lora_rank)
        _fp8_linear(tensors, f"{a}.kv_b_proj", heads * 64, 32)
        _fp8_linear(tensors, f"{a}.o_proj", hidden, heads * 32)
        _fp8_linear(tensors, f"model.layers.{layer}.mlp.down_proj", hidden, 96)
    config = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": hidden,
              "num_hidden_layers": 2, "q_lora_rank": q_lora_rank, "kv_lora_rank": 32, "qk_rope_head_dim": 16,
              "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic",
                                      "weight_block_size": [128, 128],
                                      "modules_to_not_convert": ["self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa"]}}
    return write_checkpoint(root, config, tensors)


# amd-quark's specs as its exports write them (SGLang's QuarkConfig reads `weight` and `input_tensors`).
MXFP4_SPEC = {"weight": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": False,
                         "scale_format": "e8m0"},
              "input_tensors": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": True,
                                "scale_format": "e8m0"},
              "output_tensors": None, "bias": None}
FP8_SPEC = {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False},
            "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False},
            "output_tensors": None, "bias": None}


def quark_config(exclude: list[str], spec: dict = MXFP4_SPEC, **extra) -> dict:
    return {"quant_method": "quark", "export": {"kv_cache_group": [], "pack_method": "reorder"},
            "global_quant_config": spec, "layer_quant_config": {}, "layer_type_quant_config": {}, "exclude": exclude,
            **extra}


def _quark_linear(tensors: dict, name: str, out_features: int, in_features: int, form: str) -> None:
    """A linear stored as `form`: mxfp4 (packed uint8 + E8M0 scales), fp8 (E4M3 + a per-tensor scale), bf16."""
    if form == "mxfp4":
        tensors[f"{name}.weight"] = ("U8", (out_features, in_features // 2))
        tensors[f"{name}.weight_scale"] = ("U8", (out_features, in_features // 32))
    elif form == "fp8":
        tensors[f"{name}.weight"] = ("F8_E4M3", (out_features, in_features))
        tensors[f"{name}.weight_scale"] = ("F32", ())
    else:
        tensors[f"{name}.weight"] = ("BF16", (out_features, in_features))


def deepseek_quark(root: Path, *, exclude: list[str], spec: dict = MXFP4_SPEC, wrapper: bool = False,
                   forms: dict[str, str] | None = None, n_routed_experts: int = 8, layers: int = 3,
                   hidden: int = 128, mtp_layer: bool = False, architecture: str = "DeepseekV3ForCausalLM",
                   extra_tensors: dict | None = None, **quark_extra) -> Path:
    """A DeepSeek-V3-style Quark checkpoint: MLA attention (q_lora_rank), layer 0 dense, then MoE layers with
    one shared expert; `wrapper` makes it a KimiK25ForConditionalGeneration export (language_model.* names).
    `forms` maps a leaf (q_a_proj, kv_a_proj_with_mqa, shared_experts, experts, ...) to how it is stored; every
    other linear is stored in the spec's format. `mtp_layer` appends the NextN layer model.layers.{layers}."""
    quantized = "mxfp4" if spec is MXFP4_SPEC else "fp8"
    forms = {"q_a_proj": "bf16", "kv_a_proj_with_mqa": "bf16", **(forms or {})}
    prefix = "language_model." if wrapper else ""
    tensors: dict = {f"{prefix}lm_head.weight": ("BF16", (1000, hidden)),
                     f"{prefix}model.embed_tokens.weight": ("BF16", (1000, hidden))}
    inter, moe = 256, 64
    for layer in range(layers + (1 if mtp_layer else 0)):
        p = f"{prefix}model.layers.{layer}"
        for leaf, shape in (("q_a_proj", (64, hidden)), ("kv_a_proj_with_mqa", (48, hidden)), ("q_b_proj", (192, 64)),
                            ("kv_b_proj", (256, 32)), ("o_proj", (hidden, 128))):
            _quark_linear(tensors, f"{p}.self_attn.{leaf}", *shape, forms.get(leaf, quantized))
        if layer == 0:
            for leaf, shape in (("gate_proj", (inter, hidden)), ("up_proj", (inter, hidden)), ("down_proj", (hidden, inter))):
                _quark_linear(tensors, f"{p}.mlp.{leaf}", *shape, forms.get("mlp", quantized))
            continue
        tensors[f"{p}.mlp.gate.weight"] = ("BF16", (n_routed_experts, hidden))
        for expert in range(n_routed_experts):
            for leaf, shape in (("gate_proj", (moe, hidden)), ("up_proj", (moe, hidden)), ("down_proj", (hidden, moe))):
                _quark_linear(tensors, f"{p}.mlp.experts.{expert}.{leaf}", *shape, forms.get("experts", quantized))
        for leaf, shape in (("gate_proj", (moe, hidden)), ("up_proj", (moe, hidden)), ("down_proj", (hidden, moe))):
            _quark_linear(tensors, f"{p}.mlp.shared_experts.{leaf}", *shape, forms.get("shared_experts", quantized))
        if layer == layers:
            _quark_linear(tensors, f"{p}.eh_proj", hidden, 2 * hidden, forms.get("eh_proj", quantized))
    tensors.update(extra_tensors or {})
    text = {"architectures": [architecture], "model_type": "kimi_k2" if wrapper else "deepseek_v3",
            "hidden_size": hidden, "num_hidden_layers": layers, "q_lora_rank": 64, "kv_lora_rank": 32,
            "qk_rope_head_dim": 16, "n_routed_experts": n_routed_experts, "n_shared_experts": 1,
            "first_k_dense_replace": 1, "moe_layer_freq": 1, "moe_intermediate_size": moe,
            "num_nextn_predict_layers": 1 if mtp_layer else 0}
    quant = quark_config(exclude, spec, **quark_extra)
    config = ({"architectures": ["KimiK25ForConditionalGeneration"], "model_type": "kimi_k25", "text_config": text,
               "quantization_config": quant} if wrapper else {**text, "quantization_config": quant})
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
