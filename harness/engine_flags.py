"""What a suite may say about each engine, as data: the engine names and the flags harness sets itself.

The config layer (harness.suite) reads it to refuse a managed flag in `server.args`; each engine adapter
(harness.engines) takes its own set from here, so the two never disagree and loading a suite imports no
adapter.
"""

from __future__ import annotations

# SGLang's speculative parameters, from the suite's `speculative:` keys (harness.axes DEFAULT_EAGLE_PARAMS).
SGLANG_SPEC_PARAM_FLAGS = {
    "num_steps": "--speculative-num-steps",
    "eagle_topk": "--speculative-eagle-topk",
    "num_draft_tokens": "--speculative-num-draft-tokens",
}

# Per engine, the flags the matrix and the model set: a suite must not pass them by hand.
MANAGED_FLAGS: dict[str, frozenset[str]] = {
    "sglang": frozenset({
        "--model-path", "--model", "--host", "--port", "--tp", "--tp-size", "--tensor-parallel-size",
        "--ep", "--ep-size", "--expert-parallel-size", "--trust-remote-code", "--quantization",
        "--speculative-algorithm", "--speculative-draft-model-path", "--speculative-draft-model-quantization",
        *SGLANG_SPEC_PARAM_FLAGS.values(),
    }),
    "vllm": frozenset({
        "--model", "--host", "--port", "--tensor-parallel-size", "-tp", "--enable-expert-parallel",
        "--trust-remote-code", "--quantization", "--speculative-config",
    }),
    "transformers": frozenset({"--host", "--port", "--device", "--trust-remote-code", "--no-trust-remote-code"}),
}

ENGINE_NAMES = tuple(MANAGED_FLAGS)


def refused_flag(engine: str, arg: str) -> str | None:
    """The managed flag that `arg` would set on this engine, or None. The engines parse with argparse, which
    expands any unambiguous prefix (`--hos` is `--host`) and vLLM reads `_` as `-`: so an exact name, an
    abbreviation and an underscore spelling are all refused (argparse's allow_abbrev=False, for our flags)."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    flag = arg.split("=", 1)[0]
    dashes = len(flag) - len(flag.lstrip("-"))
    flag = flag[:dashes] + flag[dashes:].replace("_", "-")
    for managed in sorted(MANAGED_FLAGS[engine]):
        if managed == flag or (len(flag) > dashes and managed.startswith(flag)):
            return managed
    return None


# Per engine, the flags (and environment variables) that size a server's memory pools: a memory figure that
# depends on the device (KV pool, device peak, graphs) is compared only with a baseline run with the same ones
# (harness.compare's comparability rules).
SIZING_FLAGS: dict[str, frozenset[str]] = {
    "sglang": frozenset({"--mem-fraction-static", "--max-total-tokens", "--max-running-requests", "--context-length",
                         "--chunked-prefill-size", "--max-prefill-tokens", "--cuda-graph-max-bs", "--cuda-graph-bs",
                         "--kv-cache-dtype", "--page-size", "--disable-cuda-graph"}),
    "vllm": frozenset({"--gpu-memory-utilization", "--max-model-len", "--max-num-seqs", "--max-num-batched-tokens",
                       "--kv-cache-dtype", "--kv-cache-memory-bytes", "--block-size", "--enforce-eager",
                       "VLLM_CPU_KVCACHE_SPACE"}),
    "transformers": frozenset(),
}


def sizing_flags(engine: str, args: list[str], env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The sizing flags among a server's arguments (`--flag value`, `--flag=value`, or a bare switch: "true")
    and environment, sorted: what makes two runs' memory pools comparable."""
    wanted = SIZING_FLAGS.get(engine, frozenset())
    found: dict[str, str] = {}
    for index, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        flag = flag.replace("_", "-") if flag.startswith("--") else flag
        if flag not in wanted:
            continue
        following = args[index + 1] if index + 1 < len(args) else None
        if inline:
            found[flag] = inline
        elif following is not None and not following.startswith("--"):
            found[flag] = following
        else:
            found[flag] = "true"
    found.update({name: str(value) for name, value in env.items() if name in wanted})
    return tuple(sorted(found.items()))


# Per engine, the flag that sizes a server's static memory as a fraction of its GPU's (suite `server.memory_gib`).
MEMORY_FRACTION_FLAGS = {"sglang": "--mem-fraction-static", "vllm": "--gpu-memory-utilization"}
# Above this a server leaves its GPU nothing for the CUDA context and activations.
MAX_MEMORY_FRACTION = 0.95


def memory_fraction_args(engine: str, memory_gib: float, device_gib: float | None) -> tuple[str, str]:
    """The engine's fraction flag that gives a server `memory_gib` of a GPU of `device_gib` (rounded to three
    decimals, as SGLang prints it); a placeholder where the GPU is not known (a dry run). Raises ValueError when
    the GPU is too small."""
    flag = MEMORY_FRACTION_FLAGS[engine]
    if device_gib is None:
        return flag, f"<{memory_gib:g} GiB / GPU memory>"
    fraction = round(memory_gib / device_gib, 3)
    if fraction > MAX_MEMORY_FRACTION:
        raise ValueError(f"memory_gib {memory_gib:g} is {fraction:.0%} of a {device_gib:g} GiB GPU "
                         f"(at most {MAX_MEMORY_FRACTION:.0%})")
    return flag, f"{fraction:g}"
