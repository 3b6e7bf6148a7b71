"""SGLang: `python -m sglang.launch_server`, flags as in ../shared/reference/sglang.md."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.axes import QUANT_KINDS, SPEC_KINDS
from harness.engine_specs import SGLANG_SPEC_PARAM_FLAGS
from harness.engines.base import LOCALHOST, Engine, ServerCommand, device_env
from harness.kernels.selection import pythonpath_entries
from harness.transport import get_json, post_json

if TYPE_CHECKING:
    from harness.matrix import Cell


class SGLangEngine(Engine):
    name = "sglang"
    # /v1/models answers as soon as the HTTP server is up; the ready line comes after the warm-up.
    takes_api_key = True
    health_paths = ("/v1/models",)
    ready_line = "The server is fired up and ready to roll!"

    def command(self, cell: Cell, *, python: str, port: int, devices: list[int],
                host: str = LOCALHOST) -> ServerCommand:
        argv = [python, "-m", "sglang.launch_server", "--model-path", cell.checkpoint.path,
                "--host", host, "--port", str(port), "--tp", str(cell.tp)]
        if cell.ep:
            argv += ["--ep", str(cell.ep)]
        if cell.trust_remote_code:
            argv.append("--trust-remote-code")
        quant = QUANT_KINDS[cell.quant]
        quantization = cell.checkpoint.quantization or quant.server_quantization
        if quantization:
            argv += ["--quantization", quantization]
        algorithm = SPEC_KINDS[cell.spec].algorithm
        if algorithm:
            argv += ["--speculative-algorithm", algorithm]
            if cell.draft is not None:
                argv += ["--speculative-draft-model-path", cell.draft.path]
                if cell.draft.quantization:
                    argv += ["--speculative-draft-model-quantization", cell.draft.quantization]
            for key, value in cell.spec_params.items():
                argv += [SGLANG_SPEC_PARAM_FLAGS[key], str(value)]
        if quant.online and "--log-level" not in cell.server.args:
            # The online-quantization peak-memory lines are logged at DEBUG only (#18005).
            argv += ["--log-level", "debug"]
        argv += list(cell.server.args)
        env = {**cell.server.env, **device_env(cell.hardware.vendor, devices), **kernel_env(cell)}
        return ServerCommand(tuple(argv), env, host, port)

    def _server_info(self, base_url: str) -> dict | None:
        # /get_server_info is the deprecated alias older releases still answer.
        return get_json(base_url + "/server_info") or get_json(base_url + "/get_server_info")

    def spec_state(self, base_url: str) -> dict[str, float] | None:
        info = self._server_info(base_url)
        if info is None:
            return None
        try:
            value = info["internal_states"][0]["avg_spec_accept_length"]
        except (TypeError, KeyError, IndexError):
            return None
        return None if value is None else {"avg_spec_accept_length": float(value)}

    def accept_length(self, before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
        # The server's figure is an average since boot and the cell's server serves only this eval,
        # so the reading after the eval is the eval's (the warm-up adds one short request).
        return None if after is None else round(after["avg_spec_accept_length"], 4)

    def spec_probe(self, base_url: str, prompts: list[str]) -> dict | None:
        # /generate's meta_info carries spec_accept_length = completion_tokens / verify steps per request
        # (tokenizer_manager); /v1/completions does not pass it on.
        figures = []
        for prompt in prompts:
            answer = post_json(base_url + "/generate", {"text": prompt, "sampling_params": {
                "max_new_tokens": 32, "temperature": 0}})
            body = answer[0] if isinstance(answer, list) and answer else answer
            meta = body.get("meta_info") if isinstance(body, dict) else None  # any other shape: no figure
            value = meta.get("spec_accept_length") if isinstance(meta, dict) else None
            if isinstance(value, (int, float)):
                figures.append(round(float(value), 4))
        return {"requests": len(prompts), "per_request": figures,
                "mean_accept_length": round(sum(figures) / len(figures), 4) if figures else None}

    def server_version(self, base_url: str) -> str | None:
        info = self._server_info(base_url)
        return str(info["version"]) if isinstance(info, dict) and info.get("version") else None


def kernel_env(cell: Cell) -> dict[str, str]:
    """The reference kernels' package and hook first on the server's PYTHONPATH (scheduler processes inherit
    it), before whatever the cell or harness's own environment puts there."""
    entries = pythonpath_entries(cell.kernels)
    if not entries:
        return {}
    inherited = cell.server.env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    return {"PYTHONPATH": os.pathsep.join([*entries, *(p for p in inherited.split(os.pathsep) if p)])}


SGLANG = SGLangEngine()
