"""Engine adapters: how a cell becomes a server command, and how that server is read.

Only this package starts processes (style convention 2). Building a command is pure; the
launcher (harness.engines.launcher) runs it. The adapters are imported when first asked for, so that
reading a failure class (harness.engines.failures) costs no HTTP client.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.engines.base import Engine


@functools.cache
def engines() -> dict[str, Engine]:
    """Every adapter by name, in harness.engine_flags' order."""
    from harness.engines.sglang import SGLANG
    from harness.engines.transformers import TRANSFORMERS
    from harness.engines.vllm import VLLM

    return {engine.name: engine for engine in (SGLANG, VLLM, TRANSFORMERS)}


def get_engine(name: str) -> Engine:
    return engines()[name]


__all__ = ["engines", "get_engine"]
