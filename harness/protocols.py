"""Eval protocols: the parameters that make an accuracy figure mean something.

A baseline such as "GSM8K 0.941" is only comparable to a result measured with the same
protocol. `protocol_of(config)` gives the canonical dict recorded in results and baselines,
and `protocol_differences` is the pure check the gate uses (facts: ../shared/reference/evals.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The canonical GSM8K files (openai/grade-school-math), as in ../shared/data/gsm8k/SHA256SUMS.
GSM8K_TEST_SHA256 = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
GSM8K_TRAIN_SHA256 = "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"


@dataclass(frozen=True)
class ProtocolDefaults:
    """What a named protocol fixes unless the suite overrides it."""

    shots: int
    shots_source: str  # "test-head" | "train" | "none"
    prompt_mode: str  # "completion" | "chat"
    max_tokens: int
    temperature: float = 0.0
    repeats: int = 1


PROTOCOLS: dict[str, dict[str, ProtocolDefaults]] = {
    "gsm8k": {
        # python/sglang/test/few_shot_gsm8k.py: first k TEST rows as shots, last-integer extraction.
        "sglang-fewshot": ProtocolDefaults(shots=5, shots_source="test-head", prompt_mode="completion", max_tokens=512),
        # lm_eval/tasks/gsm8k/gsm8k.yaml: 5 shots from TRAIN, strict-match / flexible-extract.
        "lm-eval": ProtocolDefaults(shots=5, shots_source="train", prompt_mode="completion", max_tokens=256),
        # One user message through the chat template (reasoning models), reasoning stripped.
        "chat": ProtocolDefaults(shots=0, shots_source="test-head", prompt_mode="chat", max_tokens=2048),
    },
    "gpqa": {
        # openai/simple-evals gpqa_eval.py as SGLang's run_eval.py uses it.
        "simple-evals": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="chat", max_tokens=2048),
    },
    # Teacher-forced next-token distributions against a stored reference (harness.evals.numerics).
    "numerics": {
        "topk-kld": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="token-ids", max_tokens=1),
    },
}

DATASETS = {
    "gsm8k": {"dataset": "gsm8k-test", "dataset_sha256": GSM8K_TEST_SHA256, "full_size": 1319},
    # GPQA Diamond is gated: its hash is taken from the file the run reads, never known in advance.
    "gpqa": {"dataset": "gpqa-diamond", "dataset_sha256": None, "full_size": 198},
    # Text rows tokenized by the reference server; the hash is that of the text the windows were cut from.
    "numerics": {"dataset": "gsm8k-train", "dataset_sha256": None, "full_size": 7473},
}

# Other datasets an eval may read instead of its default: GSM8K-format rows made at run time
# (harness.local.problems). Their hash is that of the rows generated.
ALTERNATE_DATASETS = {
    "gsm8k": {"synthetic-arith-v1": {"full_size": 100_000}},
}


@dataclass(frozen=True)
class EvalConfig:
    """One eval as a suite declares it (protocol parameters plus transport settings)."""

    name: str
    protocol: str
    shots: int
    questions: int  # number of questions actually asked
    max_tokens: int
    temperature: float
    repeats: int
    seed: int | None = None
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int = 128
    request_timeout_s: float = 600.0
    max_error_rate: float = 0.02  # more failed requests than this and the eval is INFRA_ERROR
    data: str | None = None  # a local file for datasets that cannot be downloaded (GPQA)
    dataset: str | None = None  # an alternate dataset (ALTERNATE_DATASETS); None is the eval's own
    params: Mapping[str, Any] = field(default_factory=dict)  # an eval's own parameters (numerics: window, ...)


def protocol_of(config: EvalConfig, *, dataset_sha256: str | None = None) -> dict[str, Any]:
    """The canonical protocol dict of an eval: what must match for two figures to compare."""
    if config.name == "numerics":
        from harness.evals import numerics

        return numerics.protocol_of(config, dataset_sha256=dataset_sha256)
    defaults = PROTOCOLS[config.name][config.protocol]
    dataset = DATASETS[config.name]
    default_hash = dataset["dataset_sha256"] if config.dataset is None else None
    return {
        "eval": config.name,
        "protocol": config.protocol,
        "dataset": config.dataset or dataset["dataset"],
        "dataset_sha256": dataset_sha256 or default_hash,
        "questions": config.questions,
        "shots": config.shots,
        "shots_source": defaults.shots_source,
        "prompt_mode": defaults.prompt_mode,
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
        "repeats": config.repeats,
        "chat_template_kwargs": dict(config.chat_template_kwargs),
    }


# Fields a baseline may leave unknown (null): figures imported from a PR rarely state them all.
PROTOCOL_KEYS = (
    "eval", "protocol", "dataset", "dataset_sha256", "questions", "shots", "shots_source",
    "prompt_mode", "max_tokens", "temperature", "repeats", "chat_template_kwargs",
    # numerics (harness.evals.numerics): the token set, the reference it is measured against, the tail rule
    "sequences", "window", "top_logprobs", "tail", "reference", "token_sha256", "reference_sha256",
)


def protocol_differences(result: Mapping[str, Any], baseline: Mapping[str, Any], *,
                         result_may_be_unknown: bool = False) -> list[str]:
    """The protocol keys on which a result and a baseline disagree, as 'key: baseline -> result'.

    A key the baseline leaves null (unknown provenance) is not compared; a key the baseline
    states but the result lacks is a difference, unless `result_may_be_unknown` (a suite's declared
    protocol, whose generated dataset's hash is known only at run time).
    """
    differences = []
    for key in PROTOCOL_KEYS:
        expected = baseline.get(key)
        if expected is None:
            continue
        actual = result.get(key)
        if actual is None and result_may_be_unknown:
            continue
        if _normalise(actual) != _normalise(expected):
            differences.append(f"{key}: {expected!r} -> {actual!r}")
    return differences


def _normalise(value: Any) -> Any:
    # 0 and 0.0 are the same temperature; YAML and JSON disagree on which they write.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in sorted(value.items())}
    return value
