"""The same evals through lm-eval (`lm_eval.simple_evaluate`), offline, mapped into harness's result schema.

An optional extra (`pip install lm-eval`): imported only when asked for.
- GSM8K, protocol `lm-eval`: lm-eval's own gsm8k task (its few-shot sampler, filters and exact match) with
  `dataset_path: json` and local data files, through `local-completions`, given the served tokenizer's EOS
  string as lm-eval's tokenizer would give it (harness.evals.gsm8k.with_eos_string).
- Every other protocol (GSM8K `sglang-fewshot` / `chat`, GPQA `simple-evals`): harness builds the prompts as
  its own client would (the protocol is harness's, not one of lm-eval's tasks), lm-eval sends them through
  `local-completions` or `local-chat-completions` (one user message, chat_template_kwargs passed through),
  and harness's scorer reads the raw responses. The prompts live only in a private temporary directory for
  the call (datasets' cache included), and lm-eval's logging is held at WARNING, so GPQA text reaches no
  log. Body differences from harness's own client, none of which changes a greedy answer: lm-eval always
  sends a seed (1234 unless the suite sets one) and sends `stop: []` on chat requests.
Results carry ids and outcomes only, never question text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError
from harness.evals import gsm8k
from harness.evals.base import EvalConfig
from harness.evals.registry import question_evals
from harness.results import EvalResult, Metric, QuestionOutcome
from harness.stats import standard_error

TASK = "harness_gsm8k"
PROMPTS_TASK = "harness_prompts"
DEFAULT_SEED = 1234  # lm-eval's TemplateAPI sends this seed unless told otherwise


def task_document(config: EvalConfig, data_root: Path | None) -> dict[str, Any]:
    """lm-eval's gsm8k.yaml, with local data files and the suite's shots and max tokens."""
    return {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"train": str(gsm8k.gsm8k_path("train", data_root)),
                                          "test": str(gsm8k.gsm8k_path("test", data_root))}},
        "output_type": "generate_until",
        "training_split": "train",
        "fewshot_split": "train",
        "test_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": False,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        # The EOS string is in `until` itself: lm-eval 0.4.13 appends it only on its sequential path
        # (num_concurrent 1, its default; amodel_call passes no eos), and this backend runs concurrently.
        "generation_kwargs": {"until": gsm8k.lm_eval_stop(config.params.get("eos_string")), "do_sample": False,
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


def _lm_eval() -> tuple[Any, Any]:
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("the lm-eval backend needs lm-eval: pip install 'lm-eval==0.4.13'") from None
    return simple_evaluate, TaskManager


@contextmanager
def _quiet_lm_eval() -> Iterator[None]:
    """lm-eval logs prompts at INFO in places (write_out, warnings with examples): hold it at WARNING."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _model_args(base_url: str, path: str, model: str, config: EvalConfig,
                eos_string: str | None = None) -> dict[str, Any]:
    """local-completions' arguments; `eos_string` stands for the tokenizer lm-eval would load (it appends
    the EOS string to every stop list), which harness does not load."""
    args = {"base_url": f"{base_url}{path}", "model": model, "tokenizer_backend": None,
            "tokenized_requests": False, "num_concurrent": config.concurrency, "max_retries": 3,
            "seed": DEFAULT_SEED if config.seed is None else config.seed}
    return {**args, "eos_string": eos_string} if eos_string is not None else args


def run_lm_eval(config: EvalConfig, base_url: str, *, model: str, data_root: Path | None = None,
                zip_password: str | None = None) -> EvalResult:
    if config.name == "gsm8k" and config.protocol == "lm-eval":
        if config.dataset is not None:
            raise ConfigError(f"lm-eval's gsm8k task reads GSM8K itself, not the alternate dataset {config.dataset}")
        return _run_lm_eval_gsm8k_task(config, base_url, model=model, data_root=data_root)
    return _run_harness_prompts(config, base_url, model=model, data_root=data_root, zip_password=zip_password)


def _run_lm_eval_gsm8k_task(config: EvalConfig, base_url: str, *, model: str,
                            data_root: Path | None) -> EvalResult:
    simple_evaluate, TaskManager = _lm_eval()
    config = gsm8k.with_eos_string(config, base_url)
    with tempfile.TemporaryDirectory(prefix="harness-lm-eval-") as tmp:
        document = task_document(config, data_root)
        document["dataset_kwargs"]["cache_dir"] = str(Path(tmp) / "datasets")
        (Path(tmp) / f"{TASK}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        start = time.perf_counter()
        output = simple_evaluate(
            model="local-completions",
            model_args=_model_args(base_url, "/v1/completions", model, config, config.params["eos_string"]),
            tasks=[TASK], task_manager=TaskManager(include_path=tmp), limit=config.questions,
            log_samples=True, fewshot_random_seed=1234 if config.seed is None else config.seed,
        )
        wall = time.perf_counter() - start
    return _to_result(config, output["samples"][TASK], wall)


def prompts_task_document(data_file: Path, cache_dir: Path, generation: dict[str, Any]) -> dict[str, Any]:
    """A task that sends each document's `prompt` as it is and keeps the raw response for harness's scorer."""
    return {
        "task": PROMPTS_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}, "cache_dir": str(cache_dir)},
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "prompt",  # a field name: the text as it is, no Jinja rendering
        "doc_to_target": "id",
        "target_delimiter": "",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "generation_kwargs": generation,
        "num_fewshot": 0,
        "repeats": 1,
        "metadata": {"version": 1.0},
    }


def _is_transport_error(problem: BaseException) -> bool:
    return isinstance(problem, (OSError, TimeoutError)) or type(problem).__module__.split(".")[0] in (
        "aiohttp", "requests", "urllib3")


def _generation_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    generation: dict[str, Any] = {"until": list(body.get("stop") or []), "do_sample": False,
                                  "temperature": body["temperature"], "max_gen_toks": body["max_tokens"]}
    if "chat_template_kwargs" in body:
        generation["chat_template_kwargs"] = body["chat_template_kwargs"]  # passed through into the payload
    return generation


def _run_harness_prompts(config: EvalConfig, base_url: str, *, model: str, data_root: Path | None,
                         zip_password: str | None) -> EvalResult:
    from harness.evals.base import EvalInfraError
    from harness.evals.runner import assemble_result
    from harness.transport import Response

    simple_evaluate, TaskManager = _lm_eval()
    prepare = question_evals()[config.name].prepare
    assert prepare is not None
    prepared = prepare(config, model, data_root=data_root, zip_password=zip_password)
    requests = list(prepared.requests)
    chat = requests[0].path.endswith("/chat/completions")
    with tempfile.TemporaryDirectory(prefix="harness-lm-eval-") as tmp:  # mode 0700, removed on exit
        data_file = Path(tmp) / "prompts.jsonl"
        with data_file.open("w") as handle:
            for request in requests:
                prompt = request.body["messages"][-1]["content"] if chat else request.body["prompt"]
                handle.write(json.dumps({"id": request.id, "prompt": prompt}) + "\n")
        document = prompts_task_document(data_file, Path(tmp) / "datasets", _generation_kwargs(requests[0].body))
        (Path(tmp) / f"{PROMPTS_TASK}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        start = time.perf_counter()
        with _quiet_lm_eval():
            try:
                output = simple_evaluate(
                    model="local-chat-completions" if chat else "local-completions",
                    model_args=_model_args(base_url, requests[0].path, model, config),
                    tasks=[PROMPTS_TASK], task_manager=TaskManager(include_path=tmp),
                    log_samples=True, apply_chat_template=chat,
                )
            except Exception as problem:  # lm-eval gives up after its retries by re-raising the transport's error
                if not _is_transport_error(problem):
                    raise
                raise EvalInfraError("request_errors", f"{config.name}: lm-eval failed: "
                                     f"{type(problem).__name__}: {str(problem)[:200]}") from None
        wall = time.perf_counter() - start
    texts = {sample["doc_id"]: sample["resps"][0][0] for sample in output["samples"][PROMPTS_TASK]}
    responses = [Response(request.id, texts.get(index), None if texts.get(index) is not None else "no response",
                          0.0) for index, request in enumerate(requests)]
    scored = {r.id: prepared.scorer(r.id, r.text) for r in responses if r.text is not None}
    result = assemble_result(config, dataclasses.replace(prepared, requests=iter(())), responses, scored, wall)
    # lm-eval reports no per-request latency: keep only what was measured.
    timings = {key: value for key, value in result.timings.items() if key in ("wall_s", "questions_per_s")}
    return dataclasses.replace(result, protocol={**result.protocol, "runner": "lm-eval"}, timings=timings)


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
        name="gsm8k", protocol={**gsm8k.EVAL.protocol_of(config), "runner": "lm-eval"},
        metrics={"accuracy": Metric(round(accuracy, 6), n, round(standard_error(accuracy, n), 6)),
                 "invalid_rate": Metric(round(invalid, 6), n),
                 "accuracy_flexible": Metric(round(flex, 6), len(flexible), round(standard_error(flex, len(flexible)), 6))},
        outcomes=outcomes, request_errors=0,
        timings={"wall_s": round(wall, 3), "questions_per_s": round(n / wall, 2) if wall else 0.0},
    )
