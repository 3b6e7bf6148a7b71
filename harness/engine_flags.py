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
