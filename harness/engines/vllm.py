"""vLLM: `python -m vllm.entrypoints.openai.api_server` (what `vllm serve` runs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from harness.axes import QUANT_KINDS, SPEC_KINDS
from harness.engines.base import LOCALHOST, Engine, ServerCommand, device_env
from harness.transport import get_json, http_get

if TYPE_CHECKING:
    from harness.matrix import Cell

# vLLM names the speculative methods differently from SGLang.
_VLLM_METHODS = {"NEXTN": "mtp", "EAGLE3": "eagle3", "EAGLE": "eagle", "NGRAM": "ngram"}


class VLLMEngine(Engine):
    name = "vllm"
    takes_api_key = True
    health_paths = ("/health",)

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
            elif algorithm == "NGRAM" and "num_draft_tokens" in cell.spec_params:
                # vLLM's ngram proposer has no tree: its draft length is the number of speculative tokens.
                config["num_speculative_tokens"] = cell.spec_params["num_draft_tokens"]
            argv += ["--speculative-config", json.dumps(config, sort_keys=True)]
        argv += list(cell.server.args)
        env = {**cell.server.env, **device_env(cell.hardware.vendor, devices)}
        return ServerCommand(tuple(argv), env, host, port)

    def spec_state(self, base_url: str) -> dict[str, float] | None:
        status, body = http_get(base_url + "/metrics")
        return parse_spec_counters(body) if status == 200 else None

    def accept_length(self, before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
        if not after:
            return None
        before = before or {}
        drafts = after.get("drafts", 0.0) - before.get("drafts", 0.0)
        accepted = after.get("accepted", 0.0) - before.get("accepted", 0.0)
        return None if drafts <= 0 else round(1.0 + accepted / drafts, 4)

    def server_version(self, base_url: str) -> str | None:
        info = get_json(base_url + "/version")
        return str(info["version"]) if isinstance(info, dict) and info.get("version") else None


_COUNTERS = {"vllm:spec_decode_num_drafts_total": "drafts", "vllm:spec_decode_num_accepted_tokens_total": "accepted"}


def parse_spec_counters(text: str) -> dict[str, float] | None:
    """Sum the spec-decode counters of a Prometheus text page over their label sets."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in _COUNTERS:
            found[_COUNTERS[name]] = found.get(_COUNTERS[name], 0.0) + float(line.rsplit(" ", 1)[1])
    return found or None


VLLM = VLLMEngine()
