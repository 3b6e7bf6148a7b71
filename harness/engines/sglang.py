"""SGLang: `python -m sglang.launch_server`, flags as in ../shared/reference/sglang.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.axes import QUANT_KINDS, SPEC_KINDS
from harness.engines.base import LOCALHOST, Engine, ServerCommand, device_env

if TYPE_CHECKING:
    from harness.matrix import Cell

_SPEC_PARAM_FLAGS = {
    "num_steps": "--speculative-num-steps",
    "eagle_topk": "--speculative-eagle-topk",
    "num_draft_tokens": "--speculative-num-draft-tokens",
}


class SGLangEngine(Engine):
    name = "sglang"
    managed_flags = frozenset({
        "--model-path", "--model", "--host", "--port", "--tp", "--tp-size", "--tensor-parallel-size",
        "--ep", "--ep-size", "--expert-parallel-size", "--trust-remote-code", "--quantization",
        "--speculative-algorithm", "--speculative-draft-model-path", "--speculative-draft-model-quantization",
        *_SPEC_PARAM_FLAGS.values(),
    })

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
                argv += [_SPEC_PARAM_FLAGS[key], str(value)]
        if quant.online and "--log-level" not in cell.server.args:
            # The online-quantization peak-memory lines are logged at DEBUG only (#18005).
            argv += ["--log-level", "debug"]
        argv += list(cell.server.args)
        env = {**cell.server.env, **device_env(cell.hardware.vendor, devices)}
        return ServerCommand(tuple(argv), env, host, port)


SGLANG = SGLangEngine()
