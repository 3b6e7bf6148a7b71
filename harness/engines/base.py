"""The small interface every engine adapter implements."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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

    def display(self) -> str:
        return shlex.join(self.argv)

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
    """An engine adapter. Subclasses set `name` and `managed_flags` and build commands."""

    name: str = ""
    managed_flags: frozenset[str] = frozenset()

    def command(self, cell: Cell, *, python: str, port: int, devices: list[int],
                host: str = LOCALHOST) -> ServerCommand:
        raise NotImplementedError
