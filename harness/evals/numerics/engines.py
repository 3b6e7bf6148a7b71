"""Which engines serve the numerics eval, and through which prompt-logprob API (harness.evals.numerics.logprobs):
each engine's spec says it (`logprob_api`, `no_logprobs`, harness.engine_specs)."""

from __future__ import annotations

from harness.strict import Where


def logprob_api(engine: str) -> tuple[str | None, str]:
    """How the engine returns prompt logprobs (its spec's `logprob_api`, harness.engine_specs), else None and
    why not."""
    from harness.engine_specs import ENGINES

    spec = ENGINES.get(engine)
    if spec is None or spec.logprob_api is None:
        return None, (spec.no_logprobs if spec and spec.no_logprobs
                      else f"no prompt-logprob API is known for engine '{engine}'")
    return spec.logprob_api, ""


def check_engine(engine: str, where: Where) -> None:
    """Refuse, at load time, an engine that cannot return prompt logprobs."""
    from harness.engine_specs import ENGINES

    api, reason = logprob_api(engine)
    if api is None:
        able = sorted(name for name, spec in ENGINES.items() if spec.logprob_api)
        raise where.error(f"the numerics eval is not supported by engine '{engine}': {reason}; "
                          f"use engine {' or '.join(able)}")


def api_of(engine: str) -> str:
    """The engine's prompt-logprob API; a ConfigError (one line) for an engine that has none."""
    from harness.errors import ConfigError

    api, reason = logprob_api(engine)
    if api is None:
        raise ConfigError(f"numerics: not supported by engine '{engine}': {reason}")
    return api
