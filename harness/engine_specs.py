"""What harness knows of each engine, as data: one `EngineSpec` per engine, registered once in `ENGINES`.

Every layer that treats engines differently reads its spec instead of testing the engine's name: the config
(managed and sizing flags, the memory fraction, the reference kernels), the matrix (TP, quantizations, online
quantization), the numerics eval (its prompt-logprob API), the memory command and the pipeline's version probe
(preflight). A new engine is its adapter module under harness/engines/ and one `EngineSpec` here. The spec names
its adapter and its log parser as "module:attr", imported only when a server is built or a log read, so that
loading a suite imports no adapter and no HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass

# SGLang's speculative parameters, from the suite's `speculative:` keys (harness.axes DEFAULT_EAGLE_PARAMS).
SGLANG_SPEC_PARAM_FLAGS = {
    "num_steps": "--speculative-num-steps",
    "eagle_topk": "--speculative-eagle-topk",
    "num_draft_tokens": "--speculative-num-draft-tokens",
}


@dataclass(frozen=True)
class EngineSpec:
    name: str
    adapter: str  # "module:attr" of its harness.engines.base.Engine
    distribution: str  # the Python package whose version is the engine's version
    # The flags the matrix and the model set: a suite must not pass them by hand (harness.engine_flags).
    managed_flags: frozenset[str]
    # The flags (and environment variables) that size its memory pools: a memory figure that depends on the
    # device is compared only with a baseline run with the same ones (harness.compare's comparability rules).
    sizing_flags: frozenset[str] = frozenset()
    # The flag that sizes its static memory as a fraction of the GPU's (suite `server.memory_gib`); None: none.
    memory_fraction_flag: str | None = None
    max_tp: int | None = None  # the largest tensor parallelism it serves; None: as many GPUs as the machine has
    quants: frozenset[str] | None = None  # the quant kinds (harness.axes QUANT_KINDS) it serves; None: all
    online_quant: bool = False  # quantizes BF16 weights at load (QUANT_KINDS[...].online)
    # How it returns prompt logprobs (harness.evals.numerics); None: it cannot run the numerics eval, and why.
    logprob_api: str | None = None
    no_logprobs: str = ""
    # "module:attr" of its server log's parser (lines -> harness.memory.MemoryReport); None: its log holds no
    # memory figures (`harness memory` does not offer it).
    log_parser: str | None = None
    # Preflight predicts its model loader from its release: the pipeline probes the installed version first.
    predicts_loader: bool = False
    calls_aiter: bool = False  # its MXFP4 path calls aiter, for which the reference kernels may stand in

    def supports_quant(self, quant: str) -> bool:
        return self.quants is None or quant in self.quants


ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in (
    EngineSpec(
        name="sglang", adapter="harness.engines.sglang:SGLANG", distribution="sglang",
        managed_flags=frozenset({
            "--model-path", "--model", "--host", "--port", "--tp", "--tp-size", "--tensor-parallel-size",
            "--ep", "--ep-size", "--expert-parallel-size", "--trust-remote-code", "--quantization",
            # --speculative-draft-model: 0.5.17's alias of --speculative-draft-model-path (ServerArgs' aliases)
            "--speculative-algorithm", "--speculative-draft-model-path", "--speculative-draft-model",
            "--speculative-draft-model-quantization",
            *SGLANG_SPEC_PARAM_FLAGS.values(),
        }),
        sizing_flags=frozenset({
            "--mem-fraction-static", "--max-total-tokens", "--max-running-requests", "--context-length",
            "--chunked-prefill-size", "--max-prefill-tokens", "--cuda-graph-max-bs", "--cuda-graph-bs",
            "--kv-cache-dtype", "--page-size", "--disable-cuda-graph"}),
        memory_fraction_flag="--mem-fraction-static", online_quant=True, logprob_api="sglang-generate",
        log_parser="harness.engines.logs:parse_sglang_log", predicts_loader=True, calls_aiter=True,
    ),
    EngineSpec(
        name="vllm", adapter="harness.engines.vllm:VLLM", distribution="vllm",
        managed_flags=frozenset({
            "--model", "--host", "--port", "--tensor-parallel-size", "-tp", "--enable-expert-parallel",
            "--trust-remote-code", "--quantization", "--speculative-config",
        }),
        sizing_flags=frozenset({
            "--gpu-memory-utilization", "--max-model-len", "--max-num-seqs", "--max-num-batched-tokens",
            "--kv-cache-dtype", "--kv-cache-memory-bytes", "--block-size", "--enforce-eager",
            "VLLM_CPU_KVCACHE_SPACE"}),
        memory_fraction_flag="--gpu-memory-utilization", logprob_api="vllm-prompt-logprobs",
        log_parser="harness.engines.logs:parse_vllm_log",
    ),
    EngineSpec(
        name="transformers", adapter="harness.engines.transformers:TRANSFORMERS", distribution="transformers",
        managed_flags=frozenset({"--host", "--port", "--device", "--trust-remote-code", "--no-trust-remote-code"}),
        max_tp=1, no_logprobs="`transformers serve` returns no prompt logprobs (no prompt_logprobs, no echo)",
    ),
)}

ENGINE_NAMES = tuple(ENGINES)
