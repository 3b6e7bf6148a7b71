"""Which layers a loader keeps unquantized: SGLang's `is_layer_skipped`, as fixed by #23973.

Matching is on dot boundaries ("mlp.gate" skips `model.layers.0.mlp.gate`, never
`model.layers.0.mlp.gate_up_proj`; "model.layers.34." never reaches `model.layers.340`). A fused
module (qkv_proj, gate_up_proj) is checked shard by shard, and shards that disagree are an error,
not a guess. The fallback fused shards are qkv_proj and gate_up_proj only: Qwen3-Next's
`in_proj_ba` and `in_proj_qkvz` are real unified tensors, and #23467 exploding them into
non-existent shards is what made FP8 Qwen3-Next fail at TP4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

FALLBACK_FUSED_SHARDS: Mapping[str, tuple[str, ...]] = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}
# The regression of #23467, kept to show what the rule predicts for an SGLang that still has it.
FALLBACK_FUSED_SHARDS_23467: Mapping[str, tuple[str, ...]] = {
    **FALLBACK_FUSED_SHARDS,
    "in_proj_ba": ("in_proj_b", "in_proj_a"),
    "in_proj_qkvz": ("in_proj_qkv", "in_proj_z"),
}


class ShardDisagreement(ValueError):
    """Some shards of a fused module are skipped and others are not."""


def matches(prefix: str, ignored: str) -> bool:
    """Whether an ignore entry names this module, on dot boundaries."""
    entry = ignored.strip(".")
    return bool(entry) and f".{entry}." in f".{prefix}."


def _skipped(prefix: str, ignored: Iterable[str]) -> bool:
    return any(matches(prefix, entry) for entry in ignored)


def _decide_per_shard(name: str, fused_mapping: Mapping[str, Iterable[str]], decide: Callable[[str], bool],
                      verb: str) -> bool:
    """`decide(name)`, or for a fused module the shards' common decision; shards that disagree are an error."""
    module = name.rsplit(".", 1)[-1]
    if module not in fused_mapping:
        return decide(name)
    parent = name[: -len(module)]
    decisions = {shard: decide(parent + shard) for shard in fused_mapping[module]}
    if len(set(decisions.values())) > 1:
        raise ShardDisagreement(f"{name}: shards disagree on being {verb}: "
                                + ", ".join(f"{k}={verb if v else 'quantized'}" for k, v in decisions.items()))
    return next(iter(decisions.values()))


def is_layer_skipped(prefix: str, ignored: Iterable[str],
                     fused_mapping: Mapping[str, Iterable[str]] = FALLBACK_FUSED_SHARDS) -> bool:
    ignored = list(ignored)
    return _decide_per_shard(prefix, fused_mapping, lambda name: _skipped(name, ignored), "skipped")


def exclude_matcher(exclude: Iterable[str]) -> Callable[[str], bool]:
    """A predicate for Quark exclude entries: exact names, or `re:` patterns applied with re.match.

    Compiled once per list: a trillion-parameter checkpoint asks it about every module.
    """
    import re

    exact = {entry for entry in exclude if not entry.startswith("re:")}
    patterns = [re.compile(entry[3:]) for entry in exclude if entry.startswith("re:")]
    return lambda name: name in exact or any(pattern.match(name) for pattern in patterns)


def quark_excluded(name: str, exclude: Iterable[str] | Callable[[str], bool],
                   fused_mapping: Mapping[str, Iterable[str]] = FALLBACK_FUSED_SHARDS) -> bool:
    """SGLang's quark `should_ignore_layer`: exact names or `re:` patterns (re.match); a fused module is
    checked shard by shard, and shards that disagree are an error."""
    one = exclude if callable(exclude) else exclude_matcher(exclude)
    return _decide_per_shard(name, fused_mapping, one, "excluded")
