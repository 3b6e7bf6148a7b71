"""AIME 2024, 2025 and 2026 (30 problems each) as sgl-eval scores them: sgl-eval's bundled problems (NeMo-Skills'
copies, hashed into the protocol), its math prompt and grader, run by sgl-eval (harness.evals.sgleval_backend).
The year is the dataset (`dataset: aime24`; default aime25). Only protocol: `sgl-eval`.

sgl-eval's default is 16 repeats with thinking on; harness's default, as for GPQA, is one greedy repeat (the
paired gate wants one outcome per question). Thirty questions gate only large drops: a suite that means to gate
AIME sets `repeats: 16` and a temperature, and each (problem, repeat) becomes an outcome of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.evals import data, sgleval_backend
from harness.evals.base import EvalConfig, EvalContext, Prepared, ProtocolDefaults
from harness.evals.runner import Dataset, question_eval, question_protocol
from harness.metric_kinds import MetricDef, MetricKind
from harness.results import EvalResult

NAME = "aime"
PROTOCOLS = {
    # max_tokens 2048 as SGLang's run_eval calls sgl-eval; reasoning models need far more (set max_tokens).
    "sgl-eval": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="chat", max_tokens=2048),
}
METRICS = (MetricDef("aime.accuracy", MetricKind.ACCURACY, "AIME accuracy (sgl-eval, mean over repeats)",
                     min_effect=0.10),)
DATASET = Dataset("aime25", None, 30)
ALTERNATES = {"aime24": Dataset("aime24", None, 30), "aime26": Dataset("aime26", None, 30)}


def bundled(year: str) -> Path:
    """sgl-eval's bundled problems of that year (its vendored NeMo-Skills dataset file)."""
    return Path(sgleval_backend.vendored_root()) / "dataset" / year / "test.txt"


def prepare(config: EvalConfig, model: str, **_: Any) -> Prepared:
    raise ConfigError("aime: only sgl-eval scores it (harness eval aime --protocol sgl-eval)")


def run_sgl_eval(config: EvalConfig, base_url: str, model: str, context: EvalContext) -> EvalResult:
    year = config.dataset or DATASET.name
    path = bundled(year)
    protocol = question_protocol(config, PROTOCOLS[config.protocol], DATASET, data.sha256_of(path))
    examples = sgleval_backend.bundled_examples(year)[:config.questions]
    return sgleval_backend.run(config, base_url, model, examples, protocol, benchmark_name=year,
                               stream=context.stream)


EVAL = question_eval(name=NAME, protocols=PROTOCOLS, default_protocol="sgl-eval", dataset=DATASET,
                     alternates=ALTERNATES, metrics=METRICS, prepare=prepare, runs={"sgl-eval": run_sgl_eval},
                     protocol_keys=sgleval_backend.PROTOCOL_KEYS)
