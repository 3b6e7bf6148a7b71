"""Tiny random-weight checkpoints in the fix architectures, each small enough to load in seconds.

Dimensions follow what real SGLang kernels accept (../shared/sglang-gpu/README.md): DeepSeek's MLA head
dims (qk_nope 128, qk_rope 64, v 128, kv_lora_rank 512) and a hidden size of 512 (the NextN
`fused_eh_norm` needs hidden > 256 and a multiple of 256); layers, heads, experts and vocabulary are
shrunk instead. Weights are drawn from 17 levels so that the packed checkpoints compress well; they are
random, so only loading, memory and speculative plumbing mean anything, never accuracy.

Variants (`local:<model>/<variant>`):
- tiny-dsv3 (DeepseekV3ForCausalLM: MLA, MoE with a shared expert, one NextN/MTP layer, #23219):
  bf16; quark-mxfp4-mtp-excluded and quark-mxfp4-mtp-quantized (amd-quark exports, the two healthy forms);
  quark-mxfp4-excluded-but-packed and quark-mxfp4-quantized-but-bf16 (the broken pairs); quark-fp8 (the
  shared experts quantized to FP8: SGLang 0.5.17's deepseek_v2 asks QuarkConfig for weight_block_size) and
  quark-fp8-shared-excluded (its healthy counterpart).
- tiny-qwen3-next (Qwen3NextForCausalLM, block FP8, #23973): fp8-ba-skipped (in_proj_ba listed in
  modules_to_not_convert and stored BF16) and fp8-ba-quantized (stored FP8: its two 4-wide output partitions
  are not whole 128-blocks even at TP 1).
- tiny-kimi-k25 (KimiK25ForConditionalGeneration wrapper, text model under `language_model.`, #23408):
  quark-mxfp4 and quark-mxfp4-split-shards (q_a_proj excluded, kv_a_proj_with_mqa not: the fused
  `fused_qkv_a_proj_with_mqa` shards disagree).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
SEED = 20261129
HIDDEN = 512
MTP_LAYER = 2  # num_hidden_layers = 2: SGLang reads the NextN layer at model.layers.{num_hidden_layers}
# (with num_hidden_layers == 1 it would read model.layers.0: deepseek_weight_loader's "old design").


def dsv3_config(num_hidden_layers: int = 2) -> dict[str, Any]:
    return {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "torch_dtype": "bfloat16",
        "vocab_size": 78, "hidden_size": HIDDEN, "intermediate_size": 256, "moe_intermediate_size": 128,
        "num_hidden_layers": num_hidden_layers, "num_nextn_predict_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2,
        "q_lora_rank": 128, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "v_head_dim": 128, "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
        "n_group": 1, "topk_group": 1, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
        "norm_topk_prob": True, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "hidden_act": "silu", "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "rope_scaling": None, "attention_bias": False, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "initializer_range": 0.02,
    }


def qwen3_next_config(tp4: bool = False) -> dict[str, Any]:
    """`tp4`: heads, linear-attention heads and expert widths that split into whole 128-blocks at TP 4, so that
    only in_proj_ba (2 x 8 outputs: 2 per rank) decides whether block FP8 loads (#23973 at its real TP)."""
    wide = {"intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 4,
            "linear_num_key_heads": 4, "linear_num_value_heads": 8, "moe_intermediate_size": 512,
            "shared_expert_intermediate_size": 512} if tp4 else {}
    return {**_QWEN3_NEXT_TP1, **wide}


_QWEN3_NEXT_TP1 = {
    "architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "torch_dtype": "bfloat16",
    "vocab_size": 78, "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 2,
    "full_attention_interval": 2, "layer_types": ["linear_attention", "full_attention"],
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 128, "partial_rotary_factor": 0.25,
    "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 128,
    "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "num_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 128, "shared_expert_intermediate_size": 128, "decoder_sparse_step": 1,
    "mlp_only_layers": [], "norm_topk_prob": True, "hidden_act": "silu", "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False, "attention_dropout": 0.0,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    "output_router_logits": False, "router_aux_loss_coef": 0.001,
}


def kimi_vision_config() -> dict[str, Any]:
    """The smallest MoonViT SGLang's KimiK25Config accepts; its weights are left out (text-only use)."""
    return {"patch_size": 14, "init_pos_emb_height": 4, "init_pos_emb_width": 4, "init_pos_emb_time": 4,
            "num_attention_heads": 2, "num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
            "merge_kernel_size": [2, 2], "mm_hidden_size": 64, "text_hidden_size": HIDDEN,
            # K2VLMultiModalProjector reads vt_hidden_size, which SGLang 0.5.17's KimiK25VisionConfig does not
            # declare (real Kimi-K2.5 configs carry it): without it the wrapper failed to build on the rig.
            "vt_hidden_size": 64}


# --- weights ------------------------------------------------------------------------------------------

def fill(name: str, shape: tuple[int, ...], generator) -> Any:
    """A deterministic low-entropy tensor for one parameter (17 levels, scaled by 1/sqrt(fan-in))."""
    import torch

    if name.endswith(("norm.weight", "layernorm.weight")) or name.endswith((".enorm.weight", ".hnorm.weight")):
        return torch.ones(shape, dtype=torch.bfloat16)
    if name.endswith(("e_score_correction_bias", "dt_bias")):
        return torch.zeros(shape, dtype=torch.bfloat16)
    if name.endswith("A_log"):
        return torch.zeros(shape, dtype=torch.bfloat16)  # A = -exp(0) = -1: a stable decay
    levels = torch.randint(-8, 9, shape, generator=generator).to(torch.float32)
    fan_in = shape[-1] if len(shape) > 1 else 1
    return (levels * (0.6 / fan_in ** 0.5) / 4.9).to(torch.bfloat16)


def seeded_state(shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return {name: fill(name, shape, generator) for name, shape in sorted(shapes.items())}


def save_checkpoint(out: Path, config: dict[str, Any], tensors: dict[str, Any], tokenizer_from: Path) -> Path:
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / "model.safetensors", metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    copy_tokenizer(tokenizer_from, tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def copy_tokenizer(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


# --- DeepseekV3 with an MTP layer (#23219) -----------------------------------------------------------

def dsv3_torch_model(with_mtp: bool):
    """transformers' DeepseekV3 with its fused experts split into one Linear per expert (the checkpoint's
    per-expert names), the MTP layer as decoder layer 2 plus its NextN modules, filled by `fill`."""
    import torch
    from quark.torch.utils.llm.model_preparation import preprocess_for_quantization
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    config = dsv3_config(num_hidden_layers=MTP_LAYER + 1 if with_mtp else MTP_LAYER)
    config = {k: v for k, v in config.items() if k not in ("architectures", "model_type", "torch_dtype")}
    model = DeepseekV3ForCausalLM(DeepseekV3Config(**config)).to(torch.bfloat16).eval()
    preprocess_for_quantization(model)
    if with_mtp:
        layer = model.model.layers[MTP_LAYER]
        layer.eh_proj = torch.nn.Linear(2 * HIDDEN, HIDDEN, bias=False, dtype=torch.bfloat16)
        layer.enorm = torch.nn.RMSNorm(HIDDEN, dtype=torch.bfloat16)
        layer.hnorm = torch.nn.RMSNorm(HIDDEN, dtype=torch.bfloat16)
        layer.shared_head = torch.nn.Module()
        layer.shared_head.norm = torch.nn.RMSNorm(HIDDEN, dtype=torch.bfloat16)
    state = seeded_state({name: tuple(t.shape) for name, t in model.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model


def calibration(count: int = 4):
    import torch

    generator = torch.Generator().manual_seed(SEED)
    batches = [torch.randint(3, 78, (4, 32), generator=generator) for _ in range(count)]
    return torch.utils.data.DataLoader(batches, batch_size=None)


def quark_export(model, out: Path, *, model_type: str, scheme: str, exclude: list[str]) -> Path:
    """amd-quark's own export path: its LLM template for the model type, with these exclude patterns."""
    import torch
    from quark.torch import LLMTemplate, ModelQuantizer, export_safetensors

    quantizer = ModelQuantizer(LLMTemplate.get(model_type).get_config(scheme=scheme, exclude_layers=exclude))
    with torch.no_grad():
        model = quantizer.quantize_model(model, calibration())
        model = quantizer.freeze(model)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    export_safetensors(model, tmp, custom_mode="quark")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def finish_dsv3(out: Path, tokenizer_from: Path, *, with_mtp: bool) -> None:
    """The exported config as SGLang reads a DeepSeek checkpoint: the MTP layer is not a decoder layer."""
    config = json.loads((out / "config.json").read_text())
    config.update({k: v for k, v in dsv3_config().items() if k in ("architectures", "model_type")})
    config["num_hidden_layers"] = MTP_LAYER
    config["num_nextn_predict_layers"] = 1 if with_mtp else 0
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    copy_tokenizer(tokenizer_from, out)


def edit_exclude(out: Path, change: Callable[[list[str]], list[str]]) -> None:
    config = json.loads((out / "config.json").read_text())
    quant = config["quantization_config"]
    quant["exclude"] = change(list(quant.get("exclude", [])))
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")


MTP_PREFIX = f"model.layers.{MTP_LAYER}"
MTP_PATTERN = MTP_PREFIX + ".*"  # amd-quark expands it into the layer's module names
# Routed experts stay BF16 in every rig export: on CUDA, SGLang's MXFP4 MoE post-load step (e8m0_shuffle) is
# aiter's, so an MXFP4 MoE never finishes loading there and would hide what each fix is about. amd-quark lists
# the experts one by one, which SGLang's FusedMoE (prefix `...mlp.experts`) never matches: the exported exclude
# list is rewritten with generic `re:` patterns (re.match in SGLang's should_ignore_layer), as exports do.
QUARK_DSV3_EXCLUDE = ["lm_head", "*self_attn*", "*mlp.gate", "*mlp.experts*"]
GENERIC_EXCLUDE = ["lm_head", r"re:.*\.self_attn\..*", r"re:.*\.mlp\.experts\..*", r"re:.*\.mlp\.experts$"]


def generic_exclude(exported: list[str], *, mtp: str) -> list[str]:
    """The exclude list of a DeepSeek export as the rig writes it, `mtp` saying what it holds of the MTP layer:
    "modules" (amd-quark's module names), "bare" (those and SGLang's bare layer prefix) or "none". SGLang decides
    the NextN model's quantization from `should_ignore_layer("model.layers.{n}", exclude)`: only the bare
    prefix (or a `re:` pattern) excludes it, not the module names amd-quark writes."""
    modules = [e for e in exported if e.startswith(MTP_PREFIX + ".")] if mtp in ("modules", "bare") else []
    return GENERIC_EXCLUDE + modules + ([MTP_PREFIX] if mtp == "bare" else [])


def _dsv3_quark(scheme: str, *, mtp_stored: str, mtp_config: str,
                extra: tuple[str, ...] = ()) -> Callable[[Path, Path], Path]:
    """A DeepSeek export whose MTP layer is stored quantized or BF16 (`mtp_stored`: "quantized" | "bf16") and
    whose config says of it what `mtp_config` says (see generic_exclude); `extra`: more quark patterns
    ("*name*"), written into the config as `re:` patterns too."""
    def build(out: Path, tokenizer_from: Path) -> Path:
        exclude = QUARK_DSV3_EXCLUDE + ([MTP_PATTERN] if mtp_stored == "bf16" else []) + list(extra)
        quark_export(dsv3_torch_model(with_mtp=True), out, model_type="deepseek_v3", scheme=scheme, exclude=exclude)
        finish_dsv3(out, tokenizer_from, with_mtp=True)
        regexes = ["re:.*" + pattern.strip("*").replace(".", "\\.") + ".*" for pattern in extra]
        edit_exclude(out, lambda exported: generic_exclude(exported, mtp=mtp_config) + regexes)
        return out
    return build


def build_dsv3_bf16(out: Path, tokenizer_from: Path) -> Path:
    model = dsv3_torch_model(with_mtp=True)
    return save_checkpoint(out, dsv3_config(), dict(model.state_dict()), tokenizer_from)


# --- Qwen3-Next, block FP8 (#23973) ------------------------------------------------------------------

FP8_BLOCK = 128


def qwen3_next_shapes(c: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    hidden, heads, head_dim = c["hidden_size"], c["num_attention_heads"], c["head_dim"]
    key_dim = c["linear_num_key_heads"] * c["linear_key_head_dim"]
    value_dim = c["linear_num_value_heads"] * c["linear_value_head_dim"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c["vocab_size"], hidden),
                                          "model.norm.weight": (hidden,), "lm_head.weight": (c["vocab_size"], hidden)}
    for layer, kind in enumerate(c["layer_types"]):
        p = f"model.layers.{layer}"
        shapes.update({f"{p}.input_layernorm.weight": (hidden,), f"{p}.post_attention_layernorm.weight": (hidden,)})
        if kind == "linear_attention":
            v_heads = c["linear_num_value_heads"]
            shapes.update({
                f"{p}.linear_attn.in_proj_qkvz.weight": (2 * key_dim + 2 * value_dim, hidden),
                f"{p}.linear_attn.in_proj_ba.weight": (2 * v_heads, hidden),
                f"{p}.linear_attn.conv1d.weight": (2 * key_dim + value_dim, 1, c["linear_conv_kernel_dim"]),
                f"{p}.linear_attn.dt_bias": (v_heads,), f"{p}.linear_attn.A_log": (v_heads,),
                f"{p}.linear_attn.norm.weight": (c["linear_value_head_dim"],),
                f"{p}.linear_attn.out_proj.weight": (hidden, value_dim)})
        else:
            kv = c["num_key_value_heads"] * head_dim
            shapes.update({
                f"{p}.self_attn.q_proj.weight": (2 * heads * head_dim, hidden),  # query and its output gate
                f"{p}.self_attn.k_proj.weight": (kv, hidden), f"{p}.self_attn.v_proj.weight": (kv, hidden),
                f"{p}.self_attn.o_proj.weight": (hidden, heads * head_dim),
                f"{p}.self_attn.q_norm.weight": (head_dim,), f"{p}.self_attn.k_norm.weight": (head_dim,)})
        inter, shared = c["moe_intermediate_size"], c["shared_expert_intermediate_size"]
        shapes[f"{p}.mlp.gate.weight"] = (c["num_experts"], hidden)
        shapes[f"{p}.mlp.shared_expert_gate.weight"] = (1, hidden)
        for name, width in [*((f"experts.{e}", inter) for e in range(c["num_experts"])), ("shared_expert", shared)]:
            shapes.update({f"{p}.mlp.{name}.gate_proj.weight": (width, hidden),
                           f"{p}.mlp.{name}.up_proj.weight": (width, hidden),
                           f"{p}.mlp.{name}.down_proj.weight": (hidden, width)})
    return shapes


def fp8_block_quantize(weight, block: int = FP8_BLOCK):
    """HF block FP8 as DeepSeek/Qwen release it: E4M3 weights, one float32 `weight_scale_inv` per block."""
    import torch

    out_features, in_features = weight.shape
    rows, cols = -(-out_features // block), -(-in_features // block)
    padded = torch.zeros(rows * block, cols * block, dtype=torch.float32)
    padded[:out_features, :in_features] = weight.float()
    blocks = padded.view(rows, block, cols, block)
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
    quantized = (blocks / scale[:, None, :, None]).view(rows * block, cols * block)
    return quantized[:out_features, :in_features].to(torch.float8_e4m3fn), scale


def qwen3_next_not_converted(c: dict[str, Any], skip_ba: bool) -> list[str]:
    """`modules_to_not_convert` as Qwen's FP8 releases write it: full names, layer by layer."""
    names = ["lm_head"]
    for layer, kind in enumerate(c["layer_types"]):
        p = f"model.layers.{layer}"
        names += [f"{p}.mlp.gate", f"{p}.mlp.shared_expert_gate"]
        if kind == "linear_attention" and skip_ba:
            names.append(f"{p}.linear_attn.in_proj_ba")
    return names


def _qwen3_next_fp8(skip_ba: bool, tp4: bool = False) -> Callable[[Path, Path], Path]:
    def build(out: Path, tokenizer_from: Path) -> Path:
        from harness.loading.skip import is_layer_skipped

        model_config = qwen3_next_config(tp4)
        state = seeded_state(qwen3_next_shapes(model_config))
        ignored = qwen3_next_not_converted(model_config, skip_ba)
        tensors = {}
        for name, tensor in state.items():
            module = name.removesuffix(".weight")
            linear = name.endswith(".weight") and tensor.dim() == 2 and "embed_tokens" not in name
            if linear and not is_layer_skipped(module, ignored):
                tensors[name], tensors[module + ".weight_scale_inv"] = fp8_block_quantize(tensor)
            else:
                tensors[name] = tensor
        config = {**model_config, "quantization_config": {
            "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": [FP8_BLOCK, FP8_BLOCK], "modules_to_not_convert": ignored}}
        return save_checkpoint(out, config, tensors, tokenizer_from)
    return build


# --- Kimi-K2.5/K2.6 wrapper (#23408) -----------------------------------------------------------------

KIMI_PREFIX = "language_model."
# Only the pair #23408 is about is quantized: q_a_proj and kv_a_proj_with_mqa, which SGLang fuses into
# fused_qkv_a_proj_with_mqa (MXFP4 linears load on CUDA; kv_b_proj's MLA post-processing and the MXFP4 MoE
# need aiter).
QUARK_KIMI_EXCLUDE = ["lm_head", "*mlp.gate", "*mlp.experts*", "*mlp.gate_proj", "*mlp.up_proj", "*mlp.down_proj",
                      "*shared_experts*", "*q_b_proj", "*kv_b_proj", "*o_proj"]
KIMI_STUB_PROCESSOR = Path(__file__).with_name("kimi_stub_processor.py")


def _kimi_quark(edit: Callable[[list[str]], list[str]]) -> Callable[[Path, Path], Path]:
    """A KimiK25ForConditionalGeneration checkpoint: the DeepSeek text model exported by amd-quark, its tensors
    and exclude entries put under `language_model.` as Kimi-K2.6-MXFP4 stores them, then `edit`ed. The vision
    tower's weights are left out (SGLang leaves them uninitialised; text requests never reach it), and a stub
    processor (remote code) stands in for Kimi's, which SGLang builds for every KimiK25 checkpoint."""
    def build(out: Path, tokenizer_from: Path) -> Path:
        from safetensors.torch import load_file, save_file

        quark_export(dsv3_torch_model(with_mtp=False), out, model_type="kimi_k2", scheme="mxfp4",
                     exclude=QUARK_KIMI_EXCLUDE)
        weights = out / "model.safetensors"
        tensors = {KIMI_PREFIX + name: t for name, t in load_file(weights).items()}
        save_file(tensors, weights, metadata={"format": "pt"})
        quant = json.loads((out / "config.json").read_text())["quantization_config"]
        named = [KIMI_PREFIX + e for e in quant.get("exclude", []) if ".mlp.experts." not in e]
        quant["exclude"] = edit(named + GENERIC_EXCLUDE[2:])
        # The text config keeps its architectures: DeepseekV3ForCausalLM reads text_config.architectures[0]
        # while deciding shared-expert fusion (without it the wrapper failed to build on the rig).
        text = {**dsv3_config(), "num_nextn_predict_layers": 0, "model_type": "kimi_k2"}
        config = {"architectures": ["KimiK25ForConditionalGeneration"], "model_type": "kimi_k25",
                  "torch_dtype": "bfloat16", "text_config": text, "vision_config": kimi_vision_config(),
                  "media_placeholder_token_id": 77, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                  "quantization_config": quant}
        (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        shutil.copy2(KIMI_STUB_PROCESSOR, out / "processing_kimi_stub.py")
        (out / "processor_config.json").write_text(json.dumps({
            "processor_class": "KimiStubProcessor",
            "auto_map": {"AutoProcessor": "processing_kimi_stub.KimiStubProcessor"}}, indent=1) + "\n")
        copy_tokenizer(tokenizer_from, out)
        return out
    return build


def split_fused_shards(exclude: list[str]) -> list[str]:
    """Exclude layer 1's q_a_proj while its kv_a_proj_with_mqa stays quantized: the shards of SGLang's
    fused_qkv_a_proj_with_mqa disagree."""
    return exclude + [f"{KIMI_PREFIX}model.layers.1.self_attn.q_a_proj"]


def with_fused_names(exclude: list[str]) -> list[str]:
    """Also name the fused gate_up_proj of every MLP excluded shard by shard: under the KimiK25 wrapper,
    SGLang 0.5.17's QuarkConfig ends up with DeepseekV2ForCausalLM's packed mapping (fused_qkv_a_proj_with_mqa
    only), so gate_up_proj is looked up by its own name."""
    fused = [entry.removesuffix(".gate_proj") + ".gate_up_proj" for entry in exclude if entry.endswith(".gate_proj")]
    return exclude + fused


def unprefixed(exclude: list[str]) -> list[str]:
    """The exclude entries without the wrapper's prefix, as a text-model export names them."""
    return [entry.removeprefix(KIMI_PREFIX) for entry in exclude]


# --- an EAGLE3 draft with MLA attention for the DeepSeek target (Kimi-K2.5: #23803, #26506, #19689) ---------------------

# The target's layers whose hidden states the draft reads: tiny-dsv3 has two, and SGLang's default for a draft
# that names none ([2, n // 2, n - 3], deepseek_v2.set_eagle3_layers_to_capture) captures only one of them.
EAGLE3_AUX_LAYERS = [0, 1]


def eagle3_mla_config(**change: Any) -> dict[str, Any]:
    """SGLang 0.5.17's Eagle3DeepseekV2ForCausalLM (models/kimi_k25_eagle3.py): one MLA decoder layer whose
    fused_qkv_a_proj_with_mqa reads [input_layernorm(embed), hidden_norm(target hidden)], 2 x hidden wide, an fc
    over the captured target layers, a dense MLP, its own head. MLA dimensions as the target's."""
    target = dsv3_config()
    config = {
        "architectures": ["Eagle3DeepseekV2ForCausalLM"], "model_type": "deepseek_v3", "torch_dtype": "bfloat16",
        "vocab_size": target["vocab_size"], "draft_vocab_size": target["vocab_size"], "hidden_size": HIDDEN,
        "intermediate_size": target["intermediate_size"], "num_hidden_layers": 1,
        **{key: target[key] for key in ("num_attention_heads", "num_key_value_heads", "q_lora_rank", "kv_lora_rank",
                                        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "hidden_act",
                                        "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
                                        "bos_token_id", "eos_token_id", "pad_token_id")},
        "tie_word_embeddings": False, "eagle_config": {"eagle_aux_hidden_state_layer_ids": EAGLE3_AUX_LAYERS},
    }
    config.update(change)
    return {key: value for key, value in config.items() if value is not None}


def eagle3_mla_shapes(config: dict[str, Any], *, a_proj: str, width: int) -> dict[str, tuple[int, ...]]:
    """The draft checkpoint's tensors as kimi_k25_eagle3.load_weights reads them (`layers.0.` -> midlayer);
    `a_proj`: "fused" (fused_qkv_a_proj_with_mqa) or "split" (q_a_proj and kv_a_proj_with_mqa, which the loader
    concatenates); `width`: the input width of those projections (2 x hidden in a working draft)."""
    hidden, vocab, heads = config["hidden_size"], config["vocab_size"], config["num_attention_heads"]
    q_lora = dsv3_config()["q_lora_rank"]
    kv_lora, rope = config["kv_lora_rank"], config["qk_rope_head_dim"]
    nope, v_dim, inter = config["qk_nope_head_dim"], config["v_head_dim"], config["intermediate_size"]
    a = "layers.0.self_attn."
    shapes = {
        "embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden), "norm.weight": (hidden,),
        "fc.weight": (hidden, hidden * len(EAGLE3_AUX_LAYERS)),
        "layers.0.input_layernorm.weight": (hidden,), "layers.0.hidden_norm.weight": (hidden,),
        "layers.0.post_attention_layernorm.weight": (hidden,),
        a + "q_a_layernorm.weight": (q_lora,), a + "q_b_proj.weight": (heads * (nope + rope), q_lora),
        a + "kv_a_layernorm.weight": (kv_lora,), a + "kv_b_proj.weight": (heads * (nope + v_dim), kv_lora),
        a + "o_proj.weight": (hidden, heads * v_dim),
        "layers.0.mlp.gate_proj.weight": (inter, hidden), "layers.0.mlp.up_proj.weight": (inter, hidden),
        "layers.0.mlp.down_proj.weight": (hidden, inter),
    }
    if a_proj == "fused":
        shapes[a + "fused_qkv_a_proj_with_mqa.weight"] = (q_lora + kv_lora + rope, width)
    else:
        shapes[a + "q_a_proj.weight"] = (q_lora, width)
        shapes[a + "kv_a_proj_with_mqa.weight"] = (kv_lora + rope, width)
    return shapes


def _eagle3_mla(*, a_proj: str = "fused", width: int = 2 * HIDDEN, **change: Any) -> Callable[[Path, Path], Path]:
    def build(out: Path, tokenizer_from: Path) -> Path:
        config = eagle3_mla_config(**change)
        return save_checkpoint(out, config, seeded_state(eagle3_mla_shapes(config, a_proj=a_proj, width=width)),
                               tokenizer_from)
    return build


# --- the catalogue -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    model: str
    name: str
    what: str
    build: Callable[[Path, Path], Path]  # (out dir, tokenizer source) -> out dir

    @property
    def id(self) -> str:
        return f"{self.model}/{self.name}"


VARIANTS: tuple[Variant, ...] = (
    Variant("tiny-dsv3", "bf16", "MLA + MoE (shared expert) + NextN layer, BF16", build_dsv3_bf16),
    Variant("tiny-dsv3", "quark-mxfp4-mtp-quantized", "amd-quark MXFP4, the MTP layer quantized (eh_proj packed)",
            _dsv3_quark("mxfp4", mtp_stored="quantized", mtp_config="none")),
    Variant("tiny-dsv3", "quark-mxfp4-mtp-excluded", "amd-quark MXFP4, the MTP layer stored BF16 and excluded by "
            "its bare prefix", _dsv3_quark("mxfp4", mtp_stored="bf16", mtp_config="bare")),
    Variant("tiny-dsv3", "quark-mxfp4-mtp-excluded-by-module", "amd-quark MXFP4, the MTP layer stored BF16 and "
            "excluded module by module only (GLM-5.2's form)",
            _dsv3_quark("mxfp4", mtp_stored="bf16", mtp_config="modules")),
    Variant("tiny-dsv3", "quark-mxfp4-excluded-but-packed", "broken: the config excludes the MTP layer, its "
            "eh_proj is stored packed", _dsv3_quark("mxfp4", mtp_stored="quantized", mtp_config="bare")),
    Variant("tiny-dsv3", "quark-mxfp4-quantized-but-bf16", "broken: the config quantizes the MTP layer, it is "
            "stored BF16", _dsv3_quark("mxfp4", mtp_stored="bf16", mtp_config="none")),
    Variant("tiny-dsv3", "quark-fp8", "amd-quark FP8 (shared experts FP8), the MTP layer excluded",
            _dsv3_quark("fp8", mtp_stored="bf16", mtp_config="bare")),
    Variant("tiny-dsv3", "quark-fp8-shared-excluded", "amd-quark FP8, the shared experts excluded, the MTP layer "
            "excluded", _dsv3_quark("fp8", mtp_stored="bf16", mtp_config="bare", extra=("*shared_experts*",))),
    Variant("tiny-dsv3", "quark-fp8-mtp-quantized", "amd-quark FP8, the shared experts excluded, the MTP layer "
            "quantized (eh_proj FP8)", _dsv3_quark("fp8", mtp_stored="quantized", mtp_config="none",
                                                    extra=("*shared_experts*",))),
    Variant("tiny-dsv3-eagle3", "mla", "EAGLE3 draft with MLA (Eagle3DeepseekV2ForCausalLM), "
            "fused_qkv_a_proj_with_mqa 2 x hidden wide, for tiny-dsv3/bf16", _eagle3_mla()),
    Variant("tiny-dsv3-eagle3", "mla-split-a-proj", "the same with q_a_proj and kv_a_proj_with_mqa stored apart "
            "(the draft loader concatenates them)", _eagle3_mla(a_proj="split")),
    Variant("tiny-dsv3-eagle3", "mla-hidden-wide", "broken: fused_qkv_a_proj_with_mqa reads hidden, not 2 x hidden "
            "(a target layer's projection)", _eagle3_mla(width=HIDDEN)),
    Variant("tiny-dsv3-eagle3", "mla-no-q-lora", "broken: no q_lora_rank in the draft config",
            _eagle3_mla(q_lora_rank=None)),
    Variant("tiny-dsv3-eagle3", "mla-llama-arch", "broken: the MLA draft declares LlamaForCausalLMEagle3",
            _eagle3_mla(architectures=["LlamaForCausalLMEagle3"])),
    Variant("tiny-dsv3-eagle3", "mla-kimi-model-type", "broken: model_type kimi_k25, no DeepseekV3Config alias",
            _eagle3_mla(model_type="kimi_k25")),
    Variant("tiny-qwen3-next", "fp8-ba-skipped", "block FP8, in_proj_ba in modules_to_not_convert (BF16)",
            _qwen3_next_fp8(skip_ba=True)),
    Variant("tiny-qwen3-next", "fp8-ba-quantized", "block FP8, in_proj_ba quantized (2 x 4 outputs, block 128)",
            _qwen3_next_fp8(skip_ba=False)),
    Variant("tiny-qwen3-next", "tp4-fp8-ba-skipped", "wide enough for TP 4 (every other layer whole 128-blocks "
            "per rank), in_proj_ba skipped", _qwen3_next_fp8(skip_ba=True, tp4=True)),
    Variant("tiny-qwen3-next", "tp4-fp8-ba-quantized", "the same with in_proj_ba quantized (2 outputs per rank "
            "at TP 4)", _qwen3_next_fp8(skip_ba=False, tp4=True)),
    Variant("tiny-kimi-k25", "quark-mxfp4", "KimiK25 wrapper, text model under language_model., q_a_proj and "
            "kv_a_proj_with_mqa MXFP4; MLPs excluded by shard names, as amd-quark writes them",
            _kimi_quark(lambda exclude: exclude)),
    Variant("tiny-kimi-k25", "quark-mxfp4-fused-names", "the same, the excluded MLPs also named by their fused "
            "gate_up_proj", _kimi_quark(with_fused_names)),
    Variant("tiny-kimi-k25", "quark-mxfp4-split-shards", "broken: layer 1's q_a_proj excluded, its "
            "kv_a_proj_with_mqa quantized", _kimi_quark(lambda exclude: split_fused_shards(with_fused_names(exclude)))),
    Variant("tiny-kimi-k25", "quark-mxfp4-unprefixed-exclude", "broken: exclude entries (fused names too) "
            "without language_model.",
            _kimi_quark(lambda exclude: unprefixed(with_fused_names(exclude)))),
)
BY_ID = {variant.id: variant for variant in VARIANTS}
