"""How a server is launched, as far as its loader cares: TP/EP, --quantization, speculative decoding, the SGLang
release, the flags and environment that change what gets built, and the device."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.loading.deepseek import FusionSetting
from harness.loading.releases import NEWEST, Release

TRUE_VALUES = ("1", "true", "yes", "on")  # how SGLang's EnvBool reads a variable
# Device capability as torch reports it: ROCm's gfx942 (MI300) reads 9.4, gfx950 (MI355) 9.5.
GFX_CAPABILITY = {"gfx90a": (9, 0), "gfx942": (9, 4), "gfx950": (9, 5)}
NVIDIA_CAPABILITY = (9, 0)  # an unknown NVIDIA GPU counts as Hopper (the H200 rig); what matters is >= 8.0


@dataclass(frozen=True)
class Launch:
    tp: int = 1
    quantization: str | None = None  # the engine's --quantization (None: the checkpoint's config decides)
    release: Release = NEWEST
    ep: int = 1
    spec: str = "none"
    server_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    vendor: str | None = None  # amd | nvidia | cpu; None: unknown
    gpu_arch: tuple[str, ...] = ()

    def flag(self, name: str) -> bool:
        return name in self.server_args

    def option(self, name: str) -> str | None:
        args = list(self.server_args)
        for index, arg in enumerate(args):
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None

    @property
    def use_aiter(self) -> bool:
        """SGLang's `_use_aiter`: SGLANG_USE_AITER set, on ROCm (an unknown vendor with it set is taken for ROCm)."""
        return self.vendor in ("amd", None) and self.env.get("SGLANG_USE_AITER", "").lower() in TRUE_VALUES

    @property
    def moe_padding_env(self) -> bool:
        return self.env.get("SGLANG_MOE_PADDING", "0") not in ("", "0")

    def fusion_setting(self) -> FusionSetting:
        """What shared-expert fusion sees. Where the device is unknown, or one of several, the most capable is
        assumed: fusion then stays possible, and a rule that needs it off does not fail on a guess."""
        if self.vendor == "nvidia":
            platform, capability = "cuda", NVIDIA_CAPABILITY
        elif self.vendor == "cpu":
            platform, capability = "cpu", (0, 0)
        else:
            known = [GFX_CAPABILITY[a] for a in self.gpu_arch if a in GFX_CAPABILITY]
            platform, capability = "hip", max(known, default=(9, 5))
        backend = self.option("--moe-a2a-backend")
        return FusionSetting(
            disable=self.flag("--disable-shared-experts-fusion"), enforce=self.flag("--enforce-shared-experts-fusion"),
            overlap=self.flag("--enable-two-batch-overlap") or self.flag("--enable-single-batch-overlap"),
            deepep=backend not in (None, "none"), platform=platform, capability=capability, moe_ep_size=self.ep)
