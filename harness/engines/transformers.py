"""`transformers serve`: HF's OpenAI-compatible server, the real engine of local runs (CPU or one GPU)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.engines.base import LOCALHOST, Engine, ServerCommand, device_env

if TYPE_CHECKING:
    from harness.matrix import Cell


class TransformersEngine(Engine):
    name = "transformers"
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

    def request_model(self, checkpoint_path: str) -> str | None:
        return checkpoint_path  # the forced model; /v1/models lists the hub cache instead

    def launch_env(self, cell: Cell, cell_dir: Path) -> dict[str, str]:
        # `transformers serve` answers /v1/models only when $HF_HOME/hub exists; local runs need no hub.
        hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
        (hf_home / "hub").mkdir(parents=True, exist_ok=True)
        env = {"HF_HUB_OFFLINE": "1"}
        if cell.hardware.vendor != "cpu":
            # torch's own peak allocation, beside the device sampler's figure (harness/engines/probes).
            probes = str(Path(__file__).parent / "probes")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (probes, os.environ.get("PYTHONPATH", "")) if p)
            env["HARNESS_TORCH_MEMORY_PROBE"] = str(cell_dir / "torch_memory.json")
        return env


TRANSFORMERS = TransformersEngine()
