"""harness's mirrors of SGLang's loader functions against SGLang's own answers, raises included.

The goldens (tests/golden/sglang/*.json.gz) hold thousands of randomized inputs and what the real functions of
each release returned or raised on them; `python tools/sglang_reference.py` regenerates them from SGLang's
source. Agreement must be total: one disagreement is a preflight rule that can be wrong.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.loading import deepseek, fp8, quark
from harness.loading.releases import BY_VERSION, KNOWN_RELEASES, Release
from harness.loading.skip import is_layer_skipped, should_ignore_layer

GOLDEN = Path(__file__).parent / "golden" / "sglang"
MIN_CASES = 4000


@cache
def golden(name: str) -> dict[str, Any]:
    return json.loads(gzip.decompress((GOLDEN / f"{name}.json.gz").read_bytes()))


def outcome(call) -> Any:
    """The answer in the goldens' encoding: the value, or [exception type, message]."""
    try:
        return call()
    except re.error as problem:
        return ["re.error", str(problem)]
    except ValueError as problem:  # ShardDisagreement is SGLang's ValueError
        return ["ValueError", str(problem)]
    except AssertionError as problem:
        return ["AssertionError", str(problem)]


def _linear(release: Release, global_tp, layer_tp, block, input_size, input_pp, output_size, output_pp, partitions,
            skip):
    partition = fp8.LinearPartition(input_size, input_pp, output_size, tuple(partitions))
    assert partition.output_size_per_partition == output_pp
    fp8.validate_block_quant_shapes(block, partition, fp8.linear_check_tp(release, global_tp, layer_tp), skip)


def _moe(release: Release, global_tp, moe_tp, block, intermediate_pp, use_aiter, padding_env):
    fp8.validate_moe_block_shapes(block, intermediate_pp, fp8.moe_check_tp(release, global_tp, moe_tp), use_aiter,
                                  fp8.moe_padding(use_aiter, padding_env == "1"))


def _fusion(release: Release, architecture, model_class, n_routed, n_shared, quant, disable, enforce, sbo, tbo,
            deepep, platform, capability, ep):
    setting = deepseek.FusionSetting(disable=disable, enforce=enforce, overlap=sbo or tbo, deepep=deepep,
                                     platform=platform, capability=tuple(capability), moe_ep_size=ep)
    return deepseek.fused_shared_experts(architecture, model_class, n_routed, n_shared, quant, setting)


def _scheme(release: Release, specs, layer_name, layer_type, mapping):
    data = golden("quark_layer_scheme")
    global_spec, per_layer, per_type = specs
    raw = {"global_quant_config": data["specs"][global_spec],
           "layer_quant_config": {pattern: data["specs"][spec] for pattern, spec in per_layer.items()},
           "layer_type_quant_config": {kind: data["specs"][spec] for kind, spec in per_type.items()}}
    return quark.scheme(quark.layer_config(raw, layer_name, layer_type, data["mappings"][mapping]))


MIRRORS = {
    "is_layer_skipped": lambda release, prefix, ignored, fused: is_layer_skipped(prefix, ignored, fused),
    "should_ignore_layer": lambda release, name, ignore, fused: should_ignore_layer(name, ignore, fused,
                                                                                     release=release),
    "validate_block_quant_shapes": _linear,
    "fp8_moe_block_check": _moe,
    "quark_layer_scheme": _scheme,
    "nextn_eh_proj": lambda release, draft, layers, exclude: deepseek.nextn_build(release, draft, layers,
                                                                                  exclude).answer,
    "fused_shared_experts": _fusion,
}
CASES = [(name, version) for name in MIRRORS for version in golden(name)["releases"]]


@pytest.mark.parametrize(("name", "version"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_harness_agrees_with_sglang(name, version):
    data = golden(name)
    index = data["releases"].index(version)
    release = BY_VERSION[version]
    disagreements = []
    for case in data["cases"]:
        arguments, answers = case[0], case[1:]
        expected = answers[index] if len(answers) > 1 else answers[0]
        got = outcome(lambda: MIRRORS[name](release, *arguments))  # noqa: B023 - called at once
        if got != expected:
            disagreements.append(f"{arguments} -> SGLang {expected}, harness {got}")
    assert len(data["cases"]) >= MIN_CASES
    assert not disagreements, f"{len(disagreements)} of {len(data['cases'])} disagree:\n" + "\n".join(disagreements[:10])


def test_goldens_cover_every_branch():
    """The randomized inputs reach the answers that matter: skips both ways and SGLang's raises."""
    def answers(name, index=0):
        return [case[1 + index] if len(case) > 2 else case[1] for case in golden(name)["cases"]]

    kinds = {name: {a[0] if isinstance(a, list) else a for a in answers(name)} for name in MIRRORS}
    assert kinds["is_layer_skipped"] >= {True, False, "ValueError"}
    assert kinds["should_ignore_layer"] >= {True, False, "ValueError", "re.error"}
    assert kinds["validate_block_quant_shapes"] >= {None, "ValueError"}
    assert kinds["fp8_moe_block_check"] >= {None, "ValueError"}
    assert kinds["nextn_eh_proj"] == {"unquantized", "excluded", "quantized"}
    assert kinds["quark_layer_scheme"] == {"mxfp4", "fp8_w8a8", "other", "ValueError"}
    assert kinds["fused_shared_experts"] >= {0, 1}


def test_the_releases_differ_where_harness_says_they_do():
    """Every case where 0.5.17 and 0.5.23 answer differently is one of the known changes."""
    differing = {name: sum(len(case) > 2 for case in golden(name)["cases"]) for name in MIRRORS}
    assert differing["is_layer_skipped"] == differing["nextn_eh_proj"] == differing["quark_layer_scheme"] == 0
    assert differing["should_ignore_layer"] > 0  # fused names matched first, excluded experts (0.5.23)
    assert differing["validate_block_quant_shapes"] > 0 and differing["fp8_moe_block_check"] > 0  # layer groups


def test_release_facts_match_the_source():
    """What the release table says about each release, as its source says it (facts.json, re-read from the
    source at every regeneration)."""
    facts = json.loads((GOLDEN / "facts.json").read_text())
    assert sorted(facts) == [r.version for r in KNOWN_RELEASES]
    for release in KNOWN_RELEASES:
        fact = facts[release.version]
        assert bool(fact["QuantizationConfig declares weight_block_size"]) is release.quark_config_has_weight_block_size
        assert fact["QuarkConfig sets weight_block_size only if"] == ["isinstance(self.dequantization_config, Fp8Config)"]
        assert fact["DeepseekV2MoE reads the FP8 shared experts' quant_config.weight_block_size"]
        # e4m3fn on every platform at init (MI300's e4m3fnuz comes after loading): no platform escapes the read.
        assert fact["QuarkW8A8Fp8.create_weights weight dtype"] == ["torch.float8_e4m3fn"]
        assert fact["Qwen3GatedDeltaNet builds"]["self.in_proj_ba"] == "MergedColumnParallelLinear"
        assert fact["KimiK25 gives the language_model prefix for"] == ["(ModelSlimConfig, QuarkConfig)"]  # #23408
        assert fact["loader's packed modules for quark"] == [{k: list(v) for k, v in
                                                              deepseek.QUARK_PACKED_MODULES.items()}]
