"""Which Quark scheme SGLang gives a layer: `QuarkConfig._find_matched_config` (per-layer `fnmatch` patterns, then
the layer's class name, then the global config; a fused module's shards must resolve alike) and the scheme tests
`_is_mx_fp4` / `_is_fp8_w8a8` (sglang/srt/layers/quantization/quark/quark.py). Checked against SGLang's own code
on randomized configs (tests/golden/sglang/quark_layer_scheme.json).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

MXFP4, FP8_W8A8, OTHER = "mxfp4", "fp8_w8a8", "other"


class Unmodelled(Exception):
    """A config harness does not resolve (0.5.23's per-expert entries): no verdict rather than a guess."""


def deep_compare(a: Any, b: Any) -> bool:
    """quark/utils.py deep_compare: lists compare as sets."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(deep_compare(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return set(a) == set(b)
    return a == b


def layer_config(raw: Mapping[str, Any], layer_name: str, layer_type: str,
                 fused_mapping: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """QuarkConfig._find_matched_config for a layer of class `layer_type` (MergedColumnParallelLinear, ...)."""
    proj = layer_name.split(".")[-1]
    if proj in fused_mapping:
        shards = fused_mapping[proj]
        configs = [layer_config(raw, layer_name.replace(proj, shard), layer_type, fused_mapping) for shard in shards]
        if not all(deep_compare(config, configs[0]) for config in configs):
            raise ValueError(f"Found a different quantization configuration for {list(shards)} in {layer_name}. "
                             f"SGLang requires all to use the same scheme.")
        return configs[0]
    per_layer = raw.get("layer_quant_config") or {}
    if layer_name.endswith(".experts") and any(name.startswith(layer_name + ".") for name in per_layer):
        raise Unmodelled(f"{layer_name}: per-expert layer_quant_config entries")
    for pattern, config in per_layer.items():
        if fnmatch.fnmatch(layer_name, pattern):
            return config
    per_type = raw.get("layer_type_quant_config") or {}
    if layer_type in per_type:
        return per_type[layer_type]
    return raw.get("global_quant_config") or {}


def is_mx_fp4(weight: Mapping[str, Any] | None, inputs: Mapping[str, Any] | None) -> bool:
    """QuarkConfig._is_mx_fp4: FP4 weights and inputs per group of 32, E8M0 scales, static weights, dynamic inputs."""
    if weight is None or inputs is None:
        return False
    return (weight.get("dtype") == inputs.get("dtype") == "fp4"
            and weight.get("qscheme") == inputs.get("qscheme") == "per_group"
            and weight.get("group_size") == inputs.get("group_size") == 32
            and weight.get("is_dynamic") is not True and inputs.get("is_dynamic") is not False
            and weight.get("scale_format") == inputs.get("scale_format") == "e8m0")


def is_fp8_w8a8(weight: Mapping[str, Any] | None, inputs: Mapping[str, Any] | None) -> bool:
    """QuarkConfig._is_fp8_w8a8: FP8 E4M3 static per-tensor or per-channel weights; dynamic or per-tensor inputs."""
    if weight is None or inputs is None:
        return False
    if not (weight.get("dtype") == "fp8_e4m3" and inputs.get("dtype") == "fp8_e4m3" and not weight.get("is_dynamic")
            and weight.get("qscheme") in ("per_tensor", "per_channel")):
        return False
    return bool(inputs.get("is_dynamic")) or inputs.get("qscheme") == "per_tensor"


def scheme(config: Mapping[str, Any]) -> str:
    """The scheme a linear gets, in _get_scheme_from_config's order: MXFP4 (packed uint8 weights), FP8 W8A8
    (QuarkW8A8Fp8: float8_e4m3fn weights), or anything else."""
    weight, inputs = config.get("weight"), config.get("input_tensors")
    if is_mx_fp4(weight, inputs):
        return MXFP4
    if is_fp8_w8a8(weight, inputs):
        return FP8_W8A8
    return OTHER
