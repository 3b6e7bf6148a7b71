"""`transformers serve`: HF's OpenAI-compatible server, the real engine of local runs (CPU or one GPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.engines.base import LOCALHOST, Engine, ServerCommand, device_env

if TYPE_CHECKING:
    from harness.matrix import Cell


class TransformersEngine(Engine):
    name = "transformers"
    distribution = "transformers"
    managed_flags = frozenset({"--host", "--port", "--device", "--trust-remote-code", "--no-trust-remote-code"})
    health_paths = ("/health",)
    ready_line = "Application startup complete."

    def command(self, cell: Cell, *, python: str, port: int, devices: list[int],
                host: str = LOCALHOST) -> ServerCommand:
        # The model is forced (preloaded) so that every request uses the cell's checkpoint.
        argv = [python, "-m", "transformers.cli.transformers", "serve", cell.checkpoint.path,
                "--host", host, "--port", str(port), "--log-level", "info",
                "--device", "cpu" if cell.hardware.vendor == "cpu" else "cuda:0"]
        if cell.trust_remote_code:
            argv.append("--trust-remote-code")
        argv += list(cell.server.args)
        env = {**cell.server.env, **device_env(cell.hardware.vendor, devices)}
        return ServerCommand(tuple(argv), env, host, port)


TRANSFORMERS = TransformersEngine()
