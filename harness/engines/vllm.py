"""vLLM: `python -m vllm.entrypoints.openai.api_server` (what `vllm serve` runs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from harness.axes import QUANT_KINDS, SPEC_KINDS
from harness.engines.base import LOCALHOST, Engine, ServerCommand, device_env

if TYPE_CHECKING:
    from harness.matrix import Cell

# vLLM names the speculative methods differently from SGLang.
_VLLM_METHODS = {"NEXTN": "mtp", "EAGLE3": "eagle3", "EAGLE": "eagle"}


class VLLMEngine(Engine):
    name = "vllm"
    managed_flags = frozenset({
        "--model", "--host", "--port", "--tensor-parallel-size", "-tp", "--enable-expert-parallel",
        "--trust-remote-code", "--quantization", "--speculative-config",
    })

    def command(self, cell: Cell, *, python: str, port: int, devices: list[int],
                host: str = LOCALHOST) -> ServerCommand:
        argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", cell.checkpoint.path,
                "--host", host, "--port", str(port), "--tensor-parallel-size", str(cell.tp)]
        if cell.ep:
            argv.append("--enable-expert-parallel")
        if cell.trust_remote_code:
            argv.append("--trust-remote-code")
        quantization = cell.checkpoint.quantization or QUANT_KINDS[cell.quant].server_quantization
        if quantization:
            argv += ["--quantization", quantization]
        algorithm = SPEC_KINDS[cell.spec].algorithm
        if algorithm:
            config: dict[str, object] = {"method": _VLLM_METHODS[algorithm]}
            if cell.draft is not None:
                config["model"] = cell.draft.path
            if "num_steps" in cell.spec_params:
                config["num_speculative_tokens"] = cell.spec_params["num_steps"]
            argv += ["--speculative-config", json.dumps(config, sort_keys=True)]
        argv += list(cell.server.args)
        env = {**cell.server.env, **device_env(cell.hardware.vendor, devices)}
        return ServerCommand(tuple(argv), env, host, port)


VLLM = VLLMEngine()
