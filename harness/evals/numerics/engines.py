"""Which engines serve the numerics eval, and through which prompt-logprob API (harness.evals.numerics.logprobs)."""

from __future__ import annotations

from harness.strict import Where

# How each engine returns prompt logprobs; an engine absent here cannot run this eval.
APIS = {"sglang": "sglang-generate", "vllm": "vllm-prompt-logprobs"}
UNSUPPORTED = {"transformers": "`transformers serve` returns no prompt logprobs (no prompt_logprobs, no echo)"}


def check_engine(engine: str, where: Where) -> None:
    """Refuse, at load time, an engine that cannot return prompt logprobs."""
    if engine not in APIS:
        reason = UNSUPPORTED.get(engine, f"no prompt-logprob API is known for engine '{engine}'")
        raise where.error(f"the numerics eval is not supported by engine '{engine}': {reason}; "
                          f"use engine {' or '.join(sorted(APIS))}")


def api_of(engine: str) -> str:
    """The engine's prompt-logprob API; a ConfigError (one line) for an engine that has none."""
    from harness.errors import ConfigError

    if engine not in APIS:
        raise ConfigError(f"numerics: not supported by engine '{engine}': "
                          f"{UNSUPPORTED.get(engine, 'no prompt-logprob API')}")
    return APIS[engine]
