"""Engine adapters: how a cell becomes a server command, and how that server is read.

Only this package starts processes (style convention 2). Building a command is pure; the
launcher (harness.engines.launcher) runs it.
"""

from __future__ import annotations

from harness.engines.base import Engine, ServerCommand
from harness.engines.sglang import SGLANG
from harness.engines.transformers import TRANSFORMERS
from harness.engines.vllm import VLLM

ENGINES: dict[str, Engine] = {engine.name: engine for engine in (SGLANG, VLLM, TRANSFORMERS)}


def get_engine(name: str) -> Engine:
    return ENGINES[name]


__all__ = ["ENGINES", "Engine", "ServerCommand", "get_engine"]
