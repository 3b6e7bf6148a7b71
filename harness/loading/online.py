"""online-mxfp4 (#18005): which layers online MXFP4 quantizes, and the weight memory per rank that implies.

SGLang's `--quantization quark_mxfp4` builds a Quark config at load time (`_create_online_mxfp4_config`)
with `exclude: [lm_head, router, gate]`; each linear's shard is quantized in its weight loader
(`dynamic_mxfp4_quant`, blocks of 32 along the input, E8M0 scales). Embeddings have no linear quant
method, and model code builds some small gates with `quant_config=None`. Everything here is computed
from the manifest (config.json and safetensors headers): no tensor data is read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from harness.loading.manifest import Manifest

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
SCALE_SUFFIXES = ("_scale", "_scale_inv", ".input_scale", "_zero_point")
BF16_BYTES = 2
MXFP4_BYTES_PER_VALUE = 0.5 + 1 / MXFP4_BLOCK  # a packed E2M1 nibble, and one E8M0 byte per 32 values


@dataclass(frozen=True)
class LinearWeight:
    name: str  # the module prefix, without ".weight"
    leaf: str
    logical_shape: tuple[int, int]  # [out, in] as the model sees it (packed FP4 unpacked)
    per_rank_shape: tuple[int, int]
    quantized_online: bool


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


def _per_rank(name: str, leaf: str, shape: tuple[int, int], tp: int, kv_heads: int | None) -> tuple[int, int]:
    out_features, in_features = shape
    if leaf in REPLICATED:
        return shape
    if leaf in ROW_PARALLEL:
        return out_features, in_features // tp
    if leaf in ("k_proj", "v_proj") and kv_heads and kv_heads < tp:
        return out_features // kv_heads, in_features  # fewer KV heads than ranks: one head, replicated
    return out_features // tp, in_features


def linear_weights(manifest: Manifest, tp: int) -> list[LinearWeight]:
    """Every 2-D weight the loader builds a layer for, with its shape on one rank and the online decision."""
    excluded = _excluded_leaves(manifest)
    kv_heads = manifest.text_config().get("num_key_value_heads")
    out = []
    for name, tensor in manifest.tensors.items():
        if not name.endswith(".weight") or len(tensor.shape) != 2:
            continue
        prefix = name.removesuffix(".weight")
        leaf = prefix.rsplit(".", 1)[-1]
        rows, cols = tensor.shape
        packed = tensor.dtype == "U8" and (prefix + ".weight_scale") in manifest.tensors
        logical = (rows, cols * 2 if packed else cols)
        out.append(LinearWeight(prefix, leaf, logical, _per_rank(prefix, leaf, logical, tp, kv_heads),
                                quantized_online=leaf not in excluded))
    return out


def _stored_bytes_per_rank(manifest: Manifest, tp: int) -> float:
    """Bytes of the checkpoint as stored, split as the loader splits them (scales follow their weight)."""
    from harness.loading.safetensors import DTYPE_BYTES

    kv_heads = manifest.text_config().get("num_key_value_heads")
    total = 0.0
    for name, tensor in manifest.tensors.items():
        size = DTYPE_BYTES.get(tensor.dtype, 2)
        for dim in tensor.shape:
            size *= dim
        if len(tensor.shape) == 2:
            prefix = name.rsplit(".", 1)[0]
            leaf = prefix.rsplit(".", 1)[-1]
            rows, cols = tensor.shape
            ranked = _per_rank(prefix, leaf, (rows, cols), tp, kv_heads)
            size = size * ranked[0] * ranked[1] / (rows * cols)
        total += size
    return total


def predict_weight_memory(manifest: Manifest, tp: int) -> WeightPrediction:
    weights = linear_weights(manifest, tp)
    other = sum(_numel(t.shape) for n, t in manifest.tensors.items()
                if len(t.shape) != 2 and not n.endswith(SCALE_SUFFIXES)) * BF16_BYTES  # norms, biases: replicated
    bf16 = other + sum(w.per_rank_shape[0] * w.per_rank_shape[1] * BF16_BYTES for w in weights)
    quantized = [w for w in weights if w.quantized_online]
    online = other + sum(w.per_rank_shape[0] * w.per_rank_shape[1] *
                         (MXFP4_BYTES_PER_VALUE if w.quantized_online else BF16_BYTES) for w in weights)
    largest_bf16_shard = max((w.per_rank_shape[0] * w.per_rank_shape[1] * BF16_BYTES for w in quantized), default=0)
    prequantized = _stored_bytes_per_rank(manifest, tp) if is_prequantized_mxfp4(manifest) else online
    kept = tuple(sorted({w.leaf for w in weights if not w.quantized_online}))
    return WeightPrediction(tp, bf16 / GIB, online / GIB, (online + largest_bf16_shard) / GIB, prequantized / GIB,
                            len(quantized), kept)


def partition_problems(manifest: Manifest, tp: int) -> list[str]:
    """Quantized layers whose per-rank input is not whole MXFP4 blocks: dynamic_mxfp4_quant cannot quantize them."""
    problems = []
    for weight in sorted(linear_weights(manifest, tp), key=lambda w: w.name):
        if weight.quantized_online and weight.per_rank_shape[1] % MXFP4_BLOCK:
            where = "input_size_per_partition" if weight.leaf in ROW_PARALLEL else "input_size"
            problems.append(f"{weight.name}: {where} = {weight.per_rank_shape[1]} at tp {tp} is not a multiple "
                            f"of the MXFP4 block {MXFP4_BLOCK} (logical shape {list(weight.logical_shape)})")
    return problems


def quantized_leaf_counts(manifest: Manifest, tp: int) -> Counter[str]:
    return Counter(w.leaf for w in linear_weights(manifest, tp) if w.quantized_online)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
