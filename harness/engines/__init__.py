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


def managed_flags(name: str) -> frozenset[str]:
    """Flags the harness sets itself for this engine; a suite must not pass them by hand."""
    return ENGINES[name].managed_flags


def refused_flag(name: str, arg: str) -> str | None:
    """The managed flag that `arg` would set on this engine, or None. The engines parse with argparse, which
    expands any unambiguous prefix (`--hos` is `--host`) and vLLM reads `_` as `-`: so an exact name, an
    abbreviation and an underscore spelling are all refused (argparse's allow_abbrev=False, for our flags)."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    flag = arg.split("=", 1)[0]
    dashes = len(flag) - len(flag.lstrip("-"))
    flag = flag[:dashes] + flag[dashes:].replace("_", "-")
    for managed in sorted(managed_flags(name)):
        if managed == flag or (len(flag) > dashes and managed.startswith(flag)):
            return managed
    return None


__all__ = ["ENGINES", "Engine", "ServerCommand", "get_engine", "managed_flags", "refused_flag"]
