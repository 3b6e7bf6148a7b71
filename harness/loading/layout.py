"""What SGLang builds from a checkpoint's tensors: its modules under the loader's names, each with the stored
tensors it loads. Rules compare what is built with what is stored, module by module.

Only layouts read in SGLang's model code are described; a stored tensor of any other kind is listed as not
modelled and gets no verdict (a rule that guessed would block healthy checkpoints).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.loading.fp8 import LinearPartition
from harness.loading.manifest import Manifest, Tensor

ROW_PARALLEL = ("o_proj", "down_proj", "out_proj", "dense_4h_to_h", "w2")
COLUMN_PARALLEL = ("q_b_proj", "kv_b_proj", "q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "w1", "w3")
NOT_QUANTIZED = ("gate", "router", "shared_expert_gate", "embed_tokens", "lm_head", "eh_proj")  # built without a quant config
_EXPERT = re.compile(r"^(?P<moe>.+\.experts)\.\d+\.(?P<proj>\w+)\.weight$")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class Linear:
    """A linear layer as SGLang builds it: `kind` is column | merged | qkv | row | replicated, `output_sizes` its
    logical outputs (one per merged part), `shards` the stored modules it loads."""

    name: str
    kind: str
    input_size: int
    output_sizes: tuple[int, ...]
    shards: tuple[str, ...]
    kv_heads: int | None = None  # qkv only

    def partition(self, tp: int) -> LinearPartition:
        """One rank's share, as ColumnParallelLinear / MergedColumnParallelLinear / QKVParallelLinear /
        RowParallelLinear / ReplicatedLinear compute it."""
        if self.kind == "row":
            return LinearPartition(self.input_size, self.input_size // tp, self.output_sizes[0], self.output_sizes)
        if self.kind == "replicated":
            return LinearPartition(self.input_size, self.input_size, self.output_sizes[0], self.output_sizes)
        if self.kind == "qkv":
            q, k, v = self.output_sizes
            kv_heads = self.kv_heads or 1
            head, v_head = k // kv_heads, v // kv_heads
            per_rank = 1 if tp >= kv_heads else kv_heads // tp
            parts = (q // tp, per_rank * head, per_rank * v_head)
            return LinearPartition(self.input_size, self.input_size, sum(parts) * tp, parts)
        return LinearPartition(self.input_size, self.input_size, sum(self.output_sizes),
                               tuple(size // tp for size in self.output_sizes))


@dataclass(frozen=True)
class FusedMoE:
    name: str  # "...mlp.experts"
    intermediate_size: int
    example: str  # one stored expert weight


@dataclass(frozen=True)
class Layout:
    linears: tuple[Linear, ...]
    moes: tuple[FusedMoE, ...]
    not_modelled: tuple[str, ...]  # stored weights of kinds the layout does not know


def _in_text_model(name: str, layers: int | None) -> bool:
    """Weights of the text model's own layers (an appended MTP layer loads only as a NEXTN draft)."""
    if not name.startswith("model."):
        return False
    match = _LAYER.search(name)
    return match is None or layers is None or int(match.group(1)) < layers


def _merged_sizes(leaf: str, out: int, config: Mapping) -> tuple[int, ...] | None:
    """Qwen3-Next's unified linear-attention tensors, built as MergedColumnParallelLinear (0.5.17 and 0.5.23)."""
    if leaf == "in_proj_ba":
        heads = config.get("linear_num_value_heads") or out // 2
        return (heads, heads)
    keys = ("linear_key_head_dim", "linear_num_key_heads", "linear_value_head_dim", "linear_num_value_heads")
    if not all(config.get(k) for k in keys):
        return None
    key_dim = config["linear_key_head_dim"] * config["linear_num_key_heads"]
    value_dim = config["linear_value_head_dim"] * config["linear_num_value_heads"]
    return (key_dim, key_dim, value_dim, value_dim)


def _group(parent: str, leaves: dict[str, Tensor], config: Mapping) -> tuple[list[Linear], list[str]]:
    linears, left = [], dict(leaves)

    def take(*names: str) -> list[Tensor]:
        return [left.pop(n) for n in names]

    def shards(*names: str) -> tuple[str, ...]:
        return tuple(f"{parent}.{n}" for n in names)

    if {"q_proj", "k_proj", "v_proj"} <= left.keys():
        q, k, v = take("q_proj", "k_proj", "v_proj")
        linears.append(Linear(f"{parent}.qkv_proj", "qkv", q.shape[1], (q.shape[0], k.shape[0], v.shape[0]),
                              shards("q_proj", "k_proj", "v_proj"), config.get("num_key_value_heads")))
    for fused, parts, kind in (("gate_up_proj", ("gate_proj", "up_proj"), "merged"),
                               ("fused_qkv_a_proj_with_mqa", ("q_a_proj", "kv_a_proj_with_mqa"), "replicated")):
        if set(parts) <= left.keys():
            tensors = take(*parts)
            linears.append(Linear(f"{parent}.{fused}", kind, tensors[0].shape[1],
                                  tuple(t.shape[0] for t in tensors), shards(*parts)))
    for leaf in ("in_proj_ba", "in_proj_qkvz"):
        if leaf in left and (sizes := _merged_sizes(leaf, left[leaf].shape[0], config)) is not None:
            linears.append(Linear(f"{parent}.{leaf}", "merged", take(leaf)[0].shape[1], sizes, shards(leaf)))
    for leaf in list(left):
        leaf_kind = "row" if leaf in ROW_PARALLEL else "column" if leaf in COLUMN_PARALLEL else \
            "replicated" if leaf == "kv_a_proj_with_mqa" else None
        if leaf_kind is not None:
            tensor = left.pop(leaf)
            linears.append(Linear(f"{parent}.{leaf}", leaf_kind, tensor.shape[1], (tensor.shape[0],), shards(leaf)))
    return linears, [f"{parent}.{leaf}" for leaf in left if leaf not in NOT_QUANTIZED]


def hf_layout(manifest: Manifest) -> Layout:
    """The linears and fused MoE modules of an HF-style checkpoint (model.layers.N.*) under SGLang's names."""
    config = manifest.text_config()
    layers = config.get("num_hidden_layers")
    parents: dict[str, dict[str, Tensor]] = defaultdict(dict)
    moes: dict[str, FusedMoE] = {}
    for name, tensor in manifest.tensors.items():
        if not name.endswith(".weight") or not _in_text_model(name, layers):
            continue
        expert = _EXPERT.match(name)
        if expert and len(tensor.shape) == 2:
            if expert["proj"] in ("gate_proj", "w1") and expert["moe"] not in moes:
                moes[expert["moe"]] = FusedMoE(expert["moe"], tensor.shape[0], name)
            continue
        if len(tensor.shape) == 3 and name.endswith(".experts.gate_up_proj.weight"):  # experts stored fused
            moe = name.removesuffix(".gate_up_proj.weight")
            moes.setdefault(moe, FusedMoE(moe, tensor.shape[1] // 2, name))
            continue
        if len(tensor.shape) == 2:
            parent, _, leaf = name.removesuffix(".weight").rpartition(".")
            parents[parent][leaf] = tensor
    linears, not_modelled = [], []
    for parent, leaves in sorted(parents.items()):
        built, unknown = _group(parent, leaves, config)
        linears += built
        not_modelled += unknown
    return Layout(tuple(linears), tuple(sorted(moes.values(), key=lambda m: m.name)), tuple(not_modelled))


def stored_dtypes(tensors: Mapping[str, Tensor], modules: Sequence[str]) -> dict[str, str]:
    """The stored dtype of each module's weight, where the checkpoint has one."""
    return {m: tensors[m + ".weight"].dtype for m in modules if m + ".weight" in tensors}


@dataclass(frozen=True)
class QuarkModule:
    """A module a DeepSeek-family model builds with the Quark config: its name, its class (Quark's
    layer_type_quant_config is keyed by it) and the stored weights it loads, all under the loader's names."""

    name: str
    layer_type: str
    stored: tuple[str, ...]


def _attention(a: str, q_lora_rank: object) -> list[QuarkModule]:
    if q_lora_rank:
        modules = [QuarkModule(f"{a}.fused_qkv_a_proj_with_mqa", "ReplicatedLinear",
                               (f"{a}.q_a_proj.weight", f"{a}.kv_a_proj_with_mqa.weight")),
                   QuarkModule(f"{a}.q_b_proj", "ColumnParallelLinear", (f"{a}.q_b_proj.weight",))]
    else:
        modules = [QuarkModule(f"{a}.q_proj", "ColumnParallelLinear", (f"{a}.q_proj.weight",)),
                   QuarkModule(f"{a}.kv_a_proj_with_mqa", "ReplicatedLinear", (f"{a}.kv_a_proj_with_mqa.weight",))]
    return modules + [QuarkModule(f"{a}.kv_b_proj", "ColumnParallelLinear", (f"{a}.kv_b_proj.weight",)),
                      QuarkModule(f"{a}.o_proj", "RowParallelLinear", (f"{a}.o_proj.weight",))]


def _mlp(m: str) -> list[QuarkModule]:
    return [QuarkModule(f"{m}.gate_up_proj", "MergedColumnParallelLinear", (f"{m}.gate_proj.weight", f"{m}.up_proj.weight")),
            QuarkModule(f"{m}.down_proj", "RowParallelLinear", (f"{m}.down_proj.weight",))]


def is_sparse_layer(config: Mapping, layer: int) -> bool:
    """DeepseekV2DecoderLayer._is_layer_sparse: a DeepseekV2MoE layer (routed experts, maybe a shared expert)."""
    return (config.get("n_routed_experts") is not None and layer >= (config.get("first_k_dense_replace") or 0)
            and layer % (config.get("moe_layer_freq") or 1) == 0)


def deepseek_modules(config: Mapping, prefix: str, tensors: Mapping[str, Tensor], *,
                     with_shared_experts: bool) -> list[QuarkModule]:
    """The Quark-quantizable modules of DeepseekV2Model's layers (deepseek_v2.py): MLA attention, the MoE's
    FusedMoE `experts`, its standalone shared experts (when they are not fused into `experts`), dense MLPs.
    The MoEGate router and the embeddings take no quant config."""
    experts: dict[str, list[str]] = defaultdict(list)
    for name in tensors:
        match = _EXPERT.match(name)
        if match:
            experts[match["moe"]].append(name)
    modules = []
    for layer in range(config.get("num_hidden_layers") or 0):
        p = f"{prefix}model.layers.{layer}"
        modules += _attention(f"{p}.self_attn", config.get("q_lora_rank"))
        if is_sparse_layer(config, layer):
            modules.append(QuarkModule(f"{p}.mlp.experts", "FusedMoE", tuple(sorted(experts[f"{p}.mlp.experts"]))))
            if with_shared_experts and (config.get("n_shared_experts") or 0) > 0:
                modules += _mlp(f"{p}.mlp.shared_experts")
        else:
            modules += _mlp(f"{p}.mlp")
    return modules
