"""The numerics eval's spec: its name, protocol, defaults, gated metrics, suite keys and canonical protocol."""

from __future__ import annotations

from typing import Any

from harness.evals.base import EvalConfig, ProtocolDefaults
from harness.metric_kinds import MetricDef, MetricKind
from harness.strict import Where

NAME = "numerics"
PROTOCOL = "topk-kld"
TAIL_RULE = "bucket-lower-bound"  # recorded in every protocol: how the mass beyond the top k is handled
ROW_COUNTS = {"synthetic-arith-v1": 100_000, "gsm8k-train": 7473}  # rows each text source can give
DEFAULT_DATASET = "gsm8k-train"
DEFAULTS = {"sequences": 64, "window": 128, "top_logprobs": 20}
GATED = ("kld", "top1_disagreement")
# The smallest rises that count: 4x the largest difference measured between fresh installs and runs of vLLM's
# CPU build (benchmarks/bench_numerics_noise.py, its record in benchmarks/results/numerics-noise.json: run to run
# 0; a fresh install on another CPU model against references recorded on an AMD EPYC, up to KLD 0.00112 and
# top-1 disagreement 0.00185, significant at p < 0.001), rounded up; far below what MXFP4 itself costs the tiny
# model (KLD 0.115) and under what its subtle planted defect adds (+0.015).
MIN_KLD = 0.005
MIN_TOP1_DISAGREEMENT = 0.01
METRICS = (
    MetricDef("numerics.kld", MetricKind.DIVERGENCE,
              "mean KL(reference || candidate) of next-token distributions per position (top-k bucket bound)",
              min_effect=MIN_KLD),
    MetricDef("numerics.top1_disagreement", MetricKind.DIVERGENCE,
              "share of positions whose most likely next token differs from the reference's",
              min_effect=MIN_TOP1_DISAGREEMENT),
)
# Teacher-forced next-token distributions: no shots, token ids in, one position's distribution per token.
PROTOCOLS = {PROTOCOL: ProtocolDefaults(shots=0, shots_source="none", prompt_mode="token-ids", max_tokens=1)}
PROTOCOL_KEYS = ("eval", "protocol", "dataset", "dataset_sha256", "sequences", "window", "top_logprobs", "tail",
                 "reference", "token_sha256", "reference_sha256")
REPORTED = ("delta_p_rms", "ln_ppl_ratio")
_KEYS = ("protocol", "dataset", "sequences", "window", "top_logprobs", "reference", "concurrency",
         "request_timeout_s", "max_error_rate")


def parse_config(value: Any, where: Where) -> EvalConfig:
    """The suite's `evals.numerics` mapping, strictly."""
    from harness import strict

    doc = strict.mapping(value, where, allowed=_KEYS, required=("protocol", "reference"))
    strict.choice(doc["protocol"], where.key("protocol"), what="numerics protocol", choices=(PROTOCOL,))
    dataset = strict.choice(doc.get("dataset", DEFAULT_DATASET), where.key("dataset"), what="numerics dataset",
                            choices=ROW_COUNTS)
    params: dict[str, Any] = {key: strict.integer(doc.get(key, default), where.key(key), minimum=1)
                              for key, default in DEFAULTS.items()}
    if params["window"] < 2:
        raise where.key("window").error("a window needs at least 2 tokens (the first is only context)")
    params["reference"] = strict.string(doc["reference"], where.key("reference"))
    return EvalConfig(
        name=NAME, protocol=PROTOCOL, shots=0, questions=params["sequences"], max_tokens=1, temperature=0.0,
        repeats=1, dataset=dataset, params=params,
        concurrency=strict.integer(doc.get("concurrency", 16), where.key("concurrency"), minimum=1),
        request_timeout_s=strict.number(doc.get("request_timeout_s", 600.0), where.key("request_timeout_s"),
                                        minimum=1.0),
        max_error_rate=strict.number(doc.get("max_error_rate", 0.0), where.key("max_error_rate"), minimum=0.0,
                                     maximum=1.0),
    )


def protocol_of(config: EvalConfig, *, dataset_sha256: str | None = None, token_sha256: str | None = None,
                reference_sha256: str | None = None) -> dict[str, Any]:
    """What must match for two numerics figures to compare (the hashes are known once measured)."""
    params = config.params
    return {"eval": NAME, "protocol": config.protocol, "dataset": config.dataset, "dataset_sha256": dataset_sha256,
            "sequences": params["sequences"], "window": params["window"], "top_logprobs": params["top_logprobs"],
            "tail": TAIL_RULE, "reference": params["reference"], "token_sha256": token_sha256,
            "reference_sha256": reference_sha256}


def require_numpy() -> None:
    """One line instead of a traceback where the optional extra is missing."""
    import importlib.util

    from harness.errors import ConfigError

    if importlib.util.find_spec("numpy") is None:
        raise ConfigError("the numerics eval needs numpy in harness's environment: "
                          "pip install 'sglang-harness[numerics]'")


def describe(config: EvalConfig) -> str:
    """`numerics:topk-kld/64x128 tokens/top-20 vs m/bf16/none/tp1`, for `harness list`."""
    params = config.params
    return (f"{NAME}:{config.protocol}/{params['sequences']}x{params['window']} tokens/top-{params['top_logprobs']} "
            f"vs {params['reference']}")
