"""The same GSM8K eval through lm-eval (`lm_eval.simple_evaluate`, `local-completions`), offline.

An optional extra (`pip install lm-eval`): imported only when asked for. The task is lm-eval's own
gsm8k task with `dataset_path: json` and local data files, so no hub is reached; the samples are
mapped into harness's result schema (ids and outcomes only, no question text).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError
from harness.evals import data
from harness.protocols import EvalConfig, protocol_of
from harness.results import EvalResult, Metric, QuestionOutcome
from harness.stats import standard_error

TASK = "harness_gsm8k"


def task_document(config: EvalConfig, data_root: Path | None) -> dict[str, Any]:
    """lm-eval's gsm8k.yaml, with local data files and the suite's shots and max tokens."""
    return {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"train": str(data.gsm8k_path("train", data_root)),
                                          "test": str(data.gsm8k_path("test", data_root))}},
        "output_type": "generate_until",
        "training_split": "train",
        "fewshot_split": "train",
        "test_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": False,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False,
                              "temperature": config.temperature, "max_gen_toks": config.max_tokens},
        "repeats": 1,
        "num_fewshot": config.shots,
        "filter_list": [
            {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                                                {"function": "take_first"}]},
            {"name": "flexible-extract", "filter": [{"function": "regex", "group_select": -1,
                                                     "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                                                    {"function": "take_first"}]},
        ],
        "metadata": {"version": 3.0},
    }


def run_lm_eval(config: EvalConfig, base_url: str, *, model: str, data_root: Path | None = None) -> EvalResult:
    if config.name != "gsm8k" or config.protocol != "lm-eval":
        raise ConfigError("the lm-eval backend runs gsm8k with the lm-eval protocol only")
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("the lm-eval backend needs lm-eval: pip install 'lm-eval==0.4.13'") from None
    with tempfile.TemporaryDirectory(prefix="harness-lm-eval-") as tmp:
        (Path(tmp) / f"{TASK}.yaml").write_text(yaml.safe_dump(task_document(config, data_root), sort_keys=False))
        start = time.perf_counter()
        output = simple_evaluate(
            model="local-completions",
            model_args={"base_url": f"{base_url}/v1/completions", "model": model, "tokenizer_backend": None,
                        "tokenized_requests": False, "num_concurrent": config.concurrency, "max_retries": 3},
            tasks=[TASK], task_manager=TaskManager(include_path=tmp), limit=config.questions,
            log_samples=True, fewshot_random_seed=1234 if config.seed is None else config.seed,
        )
        wall = time.perf_counter() - start
    return _to_result(config, output["samples"][TASK], wall)


def _to_result(config: EvalConfig, samples: list[dict[str, Any]], wall: float) -> EvalResult:
    strict: dict[int, tuple[bool, str]] = {}
    flexible: dict[int, bool] = {}
    for sample in samples:
        correct = float(sample["exact_match"]) == 1.0
        if sample["filter"] == "strict-match":
            strict[sample["doc_id"]] = (correct, str(sample["filtered_resps"][0]))
        elif sample["filter"] == "flexible-extract":
            flexible[sample["doc_id"]] = correct
    outcomes = tuple(QuestionOutcome(f"gsm8k-test-{doc:04d}", ok, None if text == "[invalid]" else text)
                     for doc, (ok, text) in sorted(strict.items()))
    n = len(outcomes)
    accuracy = sum(o.correct for o in outcomes) / n if n else 0.0
    invalid = sum(o.extracted is None for o in outcomes) / n if n else 0.0
    flex = sum(flexible.values()) / len(flexible) if flexible else 0.0
    return EvalResult(
        name="gsm8k", protocol={**protocol_of(config), "runner": "lm-eval"},
        metrics={"accuracy": Metric(round(accuracy, 6), n, round(standard_error(accuracy, n), 6)),
                 "invalid_rate": Metric(round(invalid, 6), n),
                 "accuracy_flexible": Metric(round(flex, 6), len(flexible), round(standard_error(flex, len(flexible)), 6))},
        outcomes=outcomes, request_errors=0,
        timings={"wall_s": round(wall, 3), "questions_per_s": round(n / wall, 2) if wall else 0.0},
    )
