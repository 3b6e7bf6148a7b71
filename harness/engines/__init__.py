"""Engine adapters: how a cell becomes a server command, and how that server is read.

Only this package starts processes (style convention 2). Building a command is pure; the
launcher (harness.engines.launcher) runs it. Each engine's spec (harness.engine_specs) names its adapter; the
adapters are imported when first asked for, so that reading a failure class (harness.engines.failures) costs no
HTTP client.
"""

from __future__ import annotations

import functools
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.engines.base import Engine


def engines() -> dict[str, Engine]:
    """Every adapter by name, in harness.engine_specs' order."""
    from harness.engine_specs import ENGINES

    return {name: get_engine(name) for name in ENGINES}


@functools.cache
def get_engine(name: str) -> Engine:
    """The adapter the engine's spec names (harness.engine_specs), imported on first use."""
    from harness.engine_specs import ENGINES

    engine = pkgutil.resolve_name(ENGINES[name].adapter)
    assert engine.name == name, f"{ENGINES[name].adapter} is the adapter of {engine.name!r}, not of {name!r}"
    return engine


__all__ = ["engines", "get_engine"]
