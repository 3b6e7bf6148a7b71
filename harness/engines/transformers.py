"""`transformers serve`: HF's OpenAI-compatible server, the real engine of local runs (CPU or one GPU)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.engines.base import LOCALHOST, Engine, ServerCommand, device_env

if TYPE_CHECKING:
    from harness.matrix import Cell

# On a CPU, torch runs BF16 (and dequantized) matmuls through oneDNN, which JIT-compiles a kernel for every
# distinct shape and keeps it in two caches (oneDNN's primitive cache and ideep's, 1,024 entries each): about
# 2.4 MiB of RSS per new token count. The continuous batcher's token counts per step follow the requests'
# arrival times, so how many distinct shapes an eval makes, and so the RSS peak, followed the machine's load
# (docs/memory.md, "The local suite"). Without the caches every matmul builds the same kernel afresh: the outputs
# are the same, the RSS no longer grows with the shapes seen. A suite's own `server.env` still wins.
CPU_BOUNDED_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0", "LRU_CACHE_CAPACITY": "1"}


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
        cpu = cell.hardware.vendor == "cpu"
        env = {**(CPU_BOUNDED_CACHES if cpu else {}), **cell.server.env, **device_env(cell.hardware.vendor, devices)}
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
