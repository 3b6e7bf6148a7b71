"""The small interface every engine adapter implements."""

from __future__ import annotations

import pkgutil
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import secrets
from harness.engine_specs import ENGINES, EngineSpec
from harness.memory import MemoryReport

if TYPE_CHECKING:
    from harness.matrix import Cell

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerCommand:
    """An argv list and the environment variables it adds (never a shell string)."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    host: str = LOCALHOST
    port: int = 0

    def shown_argv(self) -> list[str]:
        """The argv as harness writes or prints it anywhere: the values of secret-looking flags redacted."""
        return secrets.redact_argv(self.argv)

    def display(self) -> str:
        return shlex.join(self.shown_argv())

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def device_env(vendor: str, devices: list[int]) -> dict[str, str]:
    """The variables that pin a server to its GPUs."""
    if vendor == "cpu":
        return {"CUDA_VISIBLE_DEVICES": ""}
    ids = ",".join(str(d) for d in devices)
    if vendor == "amd":
        # ROCm honours both; HIP_VISIBLE_DEVICES is what SGLang's AMD CI sets.
        return {"HIP_VISIBLE_DEVICES": ids, "CUDA_VISIBLE_DEVICES": ids}
    return {"CUDA_VISIBLE_DEVICES": ids}


class Engine:
    """An engine adapter: builds the command, names its readiness check, reads its log and metrics. What the
    other layers know of it (flags, capabilities, its log parser) is its spec, harness.engine_specs."""

    name: str = ""
    health_paths: tuple[str, ...] = ("/health",)
    ready_line: str | None = None  # a log line that must have appeared before the server counts as ready
    takes_api_key: bool = False  # the server takes `--api-key K` and then requires `Authorization: Bearer K`

    def command(self, cell: Cell, *, python: str, port: int, devices: list[int],
                host: str = LOCALHOST) -> ServerCommand:
        raise NotImplementedError

    @property
    def spec(self) -> EngineSpec:
        return ENGINES[self.name]

    @property
    def distribution(self) -> str:
        return self.spec.distribution

    @property
    def managed_flags(self) -> frozenset[str]:
        return self.spec.managed_flags

    def parse_log(self, lines: Iterable[str]) -> MemoryReport:
        """Its server log's memory report; an engine that prints no memory lines leaves the device sampler as
        the only source."""
        parser = self.spec.log_parser
        return MemoryReport(engine="none") if parser is None else pkgutil.resolve_name(parser)(lines)

    def spec_state(self, base_url: str) -> dict[str, float] | None:
        """The speculative-decoding counters now (cumulative since boot), or None if unreadable."""
        return None

    def accept_length(self, before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
        return None

    def spec_probe(self, base_url: str, prompts: list[str]) -> dict | None:
        """Per-request speculative figures from a few requests of its own, a cross-check of the server's
        average (None where the engine reports none per request)."""
        return None

    def server_version(self, base_url: str) -> str | None:
        return None

    def request_model(self, checkpoint_path: str) -> str | None:
        """The `model` field requests must carry, where the engine fixes it; None: ask /v1/models."""
        return None

    def launch_env(self, cell: Cell, cell_dir: Path) -> dict[str, str]:
        """Extra environment for one launch (probes, caches); may prepare directories."""
        return {}


def engine_version(engine: Engine, python: str, base_url: str | None = None) -> dict[str, str | None]:
    """The engine's version (from the running server, else its package) and git commit where readable."""
    from harness.engines.probe import package_version  # runs a process: kept out of import time

    version = engine.server_version(base_url) if base_url else None
    package, commit = package_version(python, engine.distribution)
    return {"name": engine.name, "version": version or package, "commit": commit}
