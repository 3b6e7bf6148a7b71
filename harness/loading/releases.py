"""The SGLang releases whose loader behaviour preflight knows, and which one an engine version gets.

Each behaviour was read in the release's own source (the wheels of `pip download sglang==X --no-deps`) and the
mirrored functions are checked against that source (tests/golden/sglang/). An engine version between two known
releases gets the older one's behaviour, the newest known release answers for anything newer, and an unknown
version (no SGLang where preflight runs, no --engine-version) gets the newest: the default predicts what current
SGLang does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import ConfigError


@dataclass(frozen=True)
class Release:
    version: str
    # quark/utils.py should_ignore_layer: a fused module is first matched under its own name, and an excluded
    # expert ("...experts.3.w1") excludes the whole "...experts" module (0.5.23; 0.5.17 expands shards only).
    quark_matches_fused_name_first: bool
    # base_config.QuantizationConfig declares `weight_block_size = None` (0.5.23). In 0.5.17 QuarkConfig has the
    # attribute only when it requantizes an FP8 source, and DeepseekV2MoE reads it off any FP8 shared expert.
    quark_config_has_weight_block_size: bool
    # Fp8LinearMethod.validate_block_quant_shapes takes tp from the layer's own group (0.5.23) or the global TP
    # (0.5.17); Fp8MoEMethod's check takes the MoE TP (tp / ep, 0.5.23) or the global TP (0.5.17).
    fp8_checks_use_layer_groups: bool

    def __str__(self) -> str:
        return f"SGLang {self.version}"


KNOWN_RELEASES = (
    Release("0.5.17", quark_matches_fused_name_first=False, quark_config_has_weight_block_size=False,
            fp8_checks_use_layer_groups=False),
    Release("0.5.23", quark_matches_fused_name_first=True, quark_config_has_weight_block_size=True,
            fp8_checks_use_layer_groups=True),
)
NEWEST = KNOWN_RELEASES[-1]
BY_VERSION = {release.version: release for release in KNOWN_RELEASES}


def _numbers(version: str) -> tuple[int, ...] | None:
    match = re.match(r"v?(\d+(?:\.\d+)*)", version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


@dataclass(frozen=True)
class ReleaseChoice:
    release: Release
    engine_version: str | None  # what was asked for (None: unknown)

    def describe(self) -> str:
        if self.engine_version is None:
            return f"{self.release} loader (engine version unknown: the newest known release)"
        if self.engine_version == self.release.version:
            return f"{self.release} loader"
        engine = _numbers(self.engine_version)
        if engine is not None and engine < (_numbers(self.release.version) or ()):
            return f"{self.release} loader (engine {self.engine_version} predates the known releases)"
        return f"{self.release} loader (engine {self.engine_version}: the nearest known release at or below it)"


def choose(engine_version: str | None) -> ReleaseChoice:
    """The known release whose behaviour an engine version gets."""
    if not engine_version:
        return ReleaseChoice(NEWEST, None)
    numbers = _numbers(engine_version)
    if numbers is None:
        raise ConfigError(f"engine version {engine_version!r}: not a version (e.g. 0.5.17)")
    at_or_below = [r for r in KNOWN_RELEASES if (_numbers(r.version) or ()) <= numbers]
    return ReleaseChoice(at_or_below[-1] if at_or_below else KNOWN_RELEASES[0], engine_version)
