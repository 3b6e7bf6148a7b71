"""A checkpoint's manifest from config.json and safetensors headers alone (no tensor data read)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.loading.safetensors import read_header


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class QuantConfig:
    method: str  # "fp8", "quark", ...
    block: tuple[int, int] | None = None  # FP8 weight_block_size [block_n, block_k]
    ignored: tuple[str, ...] = ()  # modules_to_not_convert / ignored_layers / Quark exclude
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Manifest:
    path: Path
    config: dict[str, Any]
    tensors: dict[str, Tensor]
    quant: QuantConfig | None

    @property
    def architecture(self) -> str | None:
        return (self.config.get("architectures") or [None])[0]

    def text_config(self) -> dict[str, Any]:
        """The language model's config (nested in multimodal wrappers such as KimiK25)."""
        return self.config.get("text_config") or self.config


def parse_quant_config(config: dict[str, Any]) -> QuantConfig | None:
    raw = config.get("quantization_config") or config.get("text_config", {}).get("quantization_config")
    if not raw:
        return None
    method = str(raw.get("quant_method", "unknown"))
    block = raw.get("weight_block_size")
    ignored = raw.get("modules_to_not_convert") or raw.get("ignored_layers") or raw.get("exclude") or []
    return QuantConfig(method, tuple(block) if block else None, tuple(ignored), dict(raw))


def load_manifest(path: Path) -> Manifest:
    config_path = path / "config.json"
    if not config_path.exists():
        raise ConfigError(f"{path}: no config.json (is it a checkpoint directory?)")
    config = json.loads(config_path.read_text())
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = sorted(p.name for p in path.glob("*.safetensors"))
    if not shards:
        raise ConfigError(f"{path}: no safetensors files")
    tensors: dict[str, Tensor] = {}
    for shard in shards:
        header, _ = read_header(path / shard)
        for name, entry in header.items():
            tensors[name] = Tensor(entry["dtype"], tuple(entry["shape"]))
    return Manifest(path, config, tensors, parse_quant_config(config))
