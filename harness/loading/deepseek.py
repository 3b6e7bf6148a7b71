"""DeepSeek-family loading decisions (sglang/srt/models/deepseek_v2.py, deepseek_nextn.py, glm4_moe.py), mirrored:
what the NextN (MTP) draft builds for a Quark checkpoint (#23219), and whether a MoE layer's shared expert is
fused into the routed experts or built as its own MLP. Both are checked against SGLang's own code on randomized
inputs (tests/golden/sglang/nextn_eh_proj.json, fused_shared_experts.json).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.loading.releases import Release
from harness.loading.skip import should_ignore_layer

# The architectures whose text model is deepseek_v2.py's DeepseekV2Model (so DeepseekV2MoE layers).
DEEPSEEK_FAMILY = ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "DeepseekV32ForCausalLM", "GlmMoeDsaForCausalLM",
                   "MistralLarge3ForCausalLM", "KimiK25ForConditionalGeneration")
DEEPSEEK_NEXTN = "DeepseekV3ForCausalLMNextN"
GLM_NEXTN = "GlmMoeDsaForCausalLMNextN"
# ModelConfig._config_draft_model: the draft class a NEXTN draft of each target gets.
NEXTN_DRAFT_CLASS = {"DeepseekV3ForCausalLM": DEEPSEEK_NEXTN, "DeepseekV32ForCausalLM": DEEPSEEK_NEXTN,
                     "GlmMoeDsaForCausalLM": GLM_NEXTN}
# model_loader/loader.py::_get_quantization_config adds these for quark (both releases; #23408's mapping).
QUARK_PACKED_MODULES: Mapping[str, Sequence[str]] = {
    "gate_up_proj": ("gate_proj", "up_proj"),
    "fused_qkv_a_proj_with_mqa": ("q_a_proj", "kv_a_proj_with_mqa"),
}
DEEPSEEK_MTP_RENAME = {"model.layers.61": "model.decoder"}  # DeepseekV3ForCausalLMNextN.hf_to_sglang_mapper (substr)
GLM_NEXTN_SPEC_WEIGHTS = ("shared_head.norm", "eh_proj", "enorm", "hnorm")


def rename_substring(name: str, renames: Mapping[str, str]) -> str:
    """WeightsMapper(orig_to_new_substr=...)._map_name: the longest matching substring, first occurrence."""
    for old, new in sorted(renames.items(), key=lambda item: len(item[0]), reverse=True):
        if old in name:
            return name.replace(old, new, 1)
    return name


def mapped_exclude(exclude: Sequence[str], rename: Callable[[str], str] = lambda name: name) -> list[str]:
    """QuarkConfig.apply_weight_name_mapper: each entry through the model class's weight-name mapper, and every
    `language_model.` entry also without that prefix (`re:` entries are renamed as plain strings)."""
    expanded: list[str] = []
    for name in map(rename, exclude):
        expanded.append(name)
        if name.startswith("language_model."):
            expanded.append(name.removeprefix("language_model."))
    return list(dict.fromkeys(expanded))


def _glm_mtp_name(name: str, layer_prefix: str) -> str:
    """GlmMoeDsaForCausalLMNextN._map_mtp_ckpt_name: NextN-only weights under model.*, the block under model.decoder."""
    if any(part in name for part in GLM_NEXTN_SPEC_WEIGHTS):
        return name.replace(layer_prefix, "model", 1)
    return name.replace(layer_prefix, "model.decoder", 1)


@dataclass(frozen=True)
class NextnBuild:
    """What the NextN draft of a Quark checkpoint builds: `quantized` is False when the whole draft loads
    unquantized (DeepseekModelNextN with quant_config None: eh_proj an nn.Linear(2h, h)); otherwise eh_proj is
    a ReplicatedLinear(2h, h) named `model.eh_proj`, excluded or quantized under `exclude`."""

    quantized: bool
    exclude: tuple[str, ...]  # the draft's exclude list, as the loader and the draft class rewrote it
    eh_proj_excluded: bool

    @property
    def answer(self) -> str:
        return "unquantized" if not self.quantized else "excluded" if self.eh_proj_excluded else "quantized"


def nextn_build(release: Release, draft_class: str, num_hidden_layers: int, exclude: Sequence[str],
                fused_mapping: Mapping[str, Sequence[str]] = QUARK_PACKED_MODULES) -> NextnBuild:
    """_resolve_nextn_quant_config (#23219) of DeepseekV3ForCausalLMNextN or GlmMoeDsaForCausalLMNextN."""
    layer_prefix = f"model.layers.{num_hidden_layers}"
    if draft_class == GLM_NEXTN:
        names = mapped_exclude(exclude)  # the GLM draft's mapper renames nothing
        mtp = [name for name in names if name.startswith(layer_prefix + ".")]
        if mtp:  # only plain names under the MTP layer are renamed; `re:` patterns are left as they are
            extra = {_glm_mtp_name(name, layer_prefix) for name in mtp}
            if any(".mlp.experts." in name for name in mtp):
                extra.add("model.decoder.mlp.experts")
            names = list(set(names) | extra)
    else:
        names = mapped_exclude(exclude, lambda name: rename_substring(name, DEEPSEEK_MTP_RENAME))
        # The whole layer is asked about under its renamed prefix, without the fused mapping.
        if should_ignore_layer(rename_substring(layer_prefix, DEEPSEEK_MTP_RENAME), names, release=release):
            return NextnBuild(False, tuple(names), False)
    excluded = should_ignore_layer("model.eh_proj", names, fused_mapping, release=release)
    return NextnBuild(True, tuple(names), excluded)


@dataclass(frozen=True)
class FusionSetting:
    """What decides shared-expert fusion besides the model: server flags and the device."""

    disable: bool = False  # --disable-shared-experts-fusion
    enforce: bool = False  # --enforce-shared-experts-fusion
    overlap: bool = False  # --enable-two-batch-overlap / --enable-single-batch-overlap
    deepep: bool = False  # --moe-a2a-backend deepep (and the other DeepEP-class backends)
    platform: str = "hip"  # cuda | hip | musa | cpu
    capability: tuple[int, int] = (9, 4)  # gfx942 (MI300) reads as 9.4
    moe_ep_size: int = 1


def fused_shared_experts(architecture: str, model_class_architecture: str, n_routed_experts: Any,
                         n_shared_experts: Any, quant_method: str | None, setting: FusionSetting) -> int:
    """DeepseekV2ForCausalLM.determine_num_fused_shared_experts (0.5.17): the number of shared experts fused into
    the routed experts' kernel; 0 means each MoE layer builds its own shared_experts MLP."""
    s = setting
    if s.disable:
        return 0
    capable = ((s.platform == "cuda" and s.capability >= (8, 0)) or (s.platform == "hip" and s.capability >= (9, 4))
               or (s.platform == "musa" and s.capability >= (3, 1)))
    if s.enforce:
        reason = None
    elif s.overlap or s.deepep:
        reason = "overlap or DeepEP"
    elif (architecture != model_class_architecture or n_routed_experts not in (256, 384) or n_shared_experts != 1
          or (n_routed_experts == 384 and quant_method != "quark")):
        reason = "config"
    elif not capable:
        reason = "device"
    elif s.moe_ep_size > 1 and not (s.platform == "hip" and s.capability >= (9, 4)):
        reason = "expert parallelism"
    else:
        reason = None
    return 0 if reason else n_shared_experts
