"""online-mxfp4 (#18005): which layers online MXFP4 quantizes, and the weight memory per rank that implies.

SGLang's `--quantization quark_mxfp4` builds a Quark config at load time (`_create_online_mxfp4_config`)
with `exclude: [lm_head, router, gate]`; each linear's shard is quantized in its weight loader
(`dynamic_mxfp4_quant`, blocks of 32 along the input, E8M0 scales). Embeddings have no linear quant
method, and model code builds some small gates with `quant_config=None`. Everything here is computed
from the manifest (config.json and safetensors headers): no tensor data is read.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from harness.loading.manifest import Manifest, TensorClass

MXFP4_BLOCK = 32
GIB = float(1 << 30)

ONLINE_EXCLUDE = ("lm_head", "router", "gate")  # the online config's exclude list (#18005)
NO_LINEAR_METHOD = ("embed_tokens",)  # VocabParallelEmbedding: never quantized ("embed excluded")
# Module leaves SGLang's model code builds with quant_config=None, per model_type.
MODEL_UNQUANTIZED: dict[str, tuple[str, ...]] = {
    "qwen2_moe": ("shared_expert_gate",),
    "qwen3_next": ("shared_expert_gate",),
}
# Leaves whose weight SGLang replicates on every TP rank (ReplicatedLinear); other 2-D weights are split.
REPLICATED = ("gate", "router", "shared_expert_gate", "eh_proj")
# Row-parallel leaves split their input (K) across ranks; column-parallel ones split their output.
ROW_PARALLEL = ("o_proj", "down_proj", "out_proj", "w2", "dense_4h_to_h")
SCALE_KINDS = ("_scale", "_scale_inv", "input_scale", "_zero_point")  # tensor names that are part of a format
BF16_BYTES = 2
MXFP4_BYTES_PER_VALUE = 0.5 + 1 / MXFP4_BLOCK  # a packed E2M1 nibble, and one E8M0 byte per 32 values


@dataclass(frozen=True)
class WeightPrediction:
    """Predicted weight memory on one TP rank, in GiB."""

    tp: int
    bf16_gib: float
    online_mxfp4_gib: float
    online_mxfp4_load_peak_gib: float  # plus the largest BF16 shard held on the device while it is quantized
    prequantized_mxfp4_gib: float
    quantized_layers: int
    kept_layers: tuple[str, ...]  # leaf names kept in BF16 by the online scheme

    def for_quant(self, quant: str) -> float:
        """The figure a cell of this quantization should measure after loading."""
        if quant == "quark_mxfp4":
            return self.online_mxfp4_gib
        if quant in ("quark-mxfp4", "mxfp4"):
            return self.prequantized_mxfp4_gib
        return self.bf16_gib

    def to_dict(self) -> dict[str, float | int | list[str]]:
        return {"tp": self.tp, "bf16_gib": round(self.bf16_gib, 3), "online_mxfp4_gib": round(self.online_mxfp4_gib, 3),
                "online_mxfp4_load_peak_gib": round(self.online_mxfp4_load_peak_gib, 3),
                "prequantized_mxfp4_gib": round(self.prequantized_mxfp4_gib, 3),
                "quantized_layers": self.quantized_layers, "kept_layers": list(self.kept_layers)}


def is_prequantized_mxfp4(manifest: Manifest) -> bool:
    quant = manifest.quant
    if quant is None:
        return False
    if quant.method == "mxfp4":
        return True
    return quant.method == "quark" and any(t.dtype == "U8" for t in manifest.tensors.values())


def _excluded_leaves(manifest: Manifest) -> tuple[str, ...]:
    model_type = str(manifest.text_config().get("model_type", ""))
    return ONLINE_EXCLUDE + NO_LINEAR_METHOD + MODEL_UNQUANTIZED.get(model_type, ())


def _per_rank(leaf: str, shape: tuple[int, int], tp: int, kv_heads: int | None) -> tuple[int, int]:
    out_features, in_features = shape
    if leaf in REPLICATED:
        return shape
    if leaf in ROW_PARALLEL:
        return out_features, in_features // tp
    if leaf in ("k_proj", "v_proj") and kv_heads and kv_heads < tp:
        return out_features // kv_heads, in_features  # fewer KV heads than ranks: one head, replicated
    return out_features // tp, in_features


def _packed_fp4(manifest: Manifest) -> bool:
    """uint8 weights are two E2M1 values a byte (Quark / MXFP4 checkpoints)."""
    return manifest.quant is not None and manifest.quant.method in ("quark", "mxfp4")


@dataclass(frozen=True)
class _Linear:
    """A class of 2-D weights as the loader builds them on one rank."""

    tensors: TensorClass
    logical: tuple[int, int]
    per_rank: tuple[int, int]
    quantized_online: bool

    @property
    def per_rank_values(self) -> int:
        return self.per_rank[0] * self.per_rank[1] * self.tensors.count


def _linears(manifest: Manifest, tp: int) -> list[_Linear]:
    excluded = set(_excluded_leaves(manifest))
    kv_heads = manifest.text_config().get("num_key_value_heads")
    packed = _packed_fp4(manifest)
    out = []
    for tensors in manifest.tensor_classes:
        if tensors.kind != "weight" or len(tensors.shape) != 2:
            continue
        rows, cols = tensors.shape
        logical = (rows, cols * 2 if packed and tensors.dtype == "U8" else cols)
        out.append(_Linear(tensors, logical, _per_rank(tensors.leaf, logical, tp, kv_heads),
                           tensors.leaf not in excluded))
    return out


def predict_weight_memory(manifest: Manifest, tp: int) -> WeightPrediction:
    from harness.loading.safetensors import DTYPE_BYTES

    classes = manifest.tensor_classes
    linears = _linears(manifest, tp)
    # Norms, biases and other 1-D tensors: replicated, in the model's dtype. Scales are part of a format.
    other = sum(math.prod(c.shape) * c.count for c in classes
                if len(c.shape) != 2 and not c.kind.endswith(SCALE_KINDS)) * BF16_BYTES
    bf16 = other + sum(w.per_rank_values * BF16_BYTES for w in linears)
    online = other + sum(w.per_rank_values * (MXFP4_BYTES_PER_VALUE if w.quantized_online else BF16_BYTES)
                         for w in linears)
    largest_bf16_shard = max((w.per_rank[0] * w.per_rank[1] * BF16_BYTES for w in linears if w.quantized_online),
                             default=0)
    if is_prequantized_mxfp4(manifest):
        kv_heads = manifest.text_config().get("num_key_value_heads")
        prequantized = 0.0
        for c in classes:  # as stored; a 2-D tensor (weight or scale) splits as its module's weight does
            size: float = DTYPE_BYTES.get(c.dtype, 2) * math.prod(c.shape) * c.count
            if len(c.shape) == 2:
                ranked = _per_rank(c.leaf, (c.shape[0], c.shape[1]), tp, kv_heads)
                size *= ranked[0] * ranked[1] / (c.shape[0] * c.shape[1])
            prequantized += size
    else:
        prequantized = online
    kept = tuple(sorted({w.tensors.leaf for w in linears if not w.quantized_online}))
    return WeightPrediction(tp, bf16 / GIB, online / GIB, (online + largest_bf16_shard) / GIB, prequantized / GIB,
                            sum(w.tensors.count for w in linears if w.quantized_online), kept)


def partition_problems(manifest: Manifest, tp: int) -> list[str]:
    """Quantized layers whose per-rank input is not whole MXFP4 blocks: dynamic_mxfp4_quant cannot quantize them."""
    problems = []
    for weight in _linears(manifest, tp):
        if weight.quantized_online and weight.per_rank[1] % MXFP4_BLOCK:
            where = "input_size_per_partition" if weight.tensors.leaf in ROW_PARALLEL else "input_size"
            others = f" (and {weight.tensors.count - 1} more like it)" if weight.tensors.count > 1 else ""
            problems.append(f"{weight.tensors.example.removesuffix('.weight')}: {where} = {weight.per_rank[1]} "
                            f"at tp {tp} is not a multiple of the MXFP4 block {MXFP4_BLOCK} (logical shape "
                            f"{list(weight.logical)}){others}")
    return problems


def quantized_leaf_counts(manifest: Manifest, tp: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for weight in _linears(manifest, tp):
        if weight.quantized_online:
            counts[weight.tensors.leaf] += weight.tensors.count
    return counts
