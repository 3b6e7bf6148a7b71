"""Run one eval against a server and turn the responses into an EvalResult (the result schema)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from harness.evals import data, gpqa, gsm8k
from harness.evals.progress import Progress
from harness.protocols import EvalConfig, protocol_of
from harness.results import EvalResult, Metric, QuestionOutcome
from harness.stats import standard_error
from harness.transport import ClientSettings, DeadlineExceeded, Request, Response, get_json, run_requests


class EvalInfraError(Exception):
    """The eval could not be measured (too many failed requests): INFRA_ERROR, never REGRESSED."""

    def __init__(self, cause: str, message: str, partial: dict[str, EvalResult] | None = None):
        super().__init__(message)
        self.cause = cause
        self.partial = partial or {}


@dataclass(frozen=True)
class Prepared:
    """An eval ready to send: requests (an iterator, built as they are sent) and the scorer."""

    requests: Iterator[Request]
    count: int
    scorer: Callable[[str, str], tuple[str | None, bool, dict[str, Any]]]  # (id, text) -> extracted, correct, extras
    dataset_sha256: str | None


def _sampling(config: EvalConfig, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": config.max_tokens, "temperature": config.temperature}
    if config.seed is not None:
        body["seed"] = config.seed
    elif config.protocol == "lm-eval":
        body["seed"] = gsm8k.LM_EVAL_FEWSHOT_SEED  # lm-eval's local-completions sends its default seed
    return body


def gsm8k_rows(config: EvalConfig, data_root: Path | None) -> tuple[list, list | None, str]:
    """Test rows, train rows (lm-eval's shots only) and the test set's hash, from the configured dataset."""
    if config.dataset == "synthetic-arith-v1":
        from harness.local import problems

        test_rows = problems.held_out_rows(config.questions)
        train_rows = problems.train_rows() if config.protocol == "lm-eval" else None
        return test_rows, train_rows, problems.digest(test_rows)
    test_rows = data.read_gsm8k("test", data_root)
    train_rows = data.read_gsm8k("train", data_root) if config.protocol == "lm-eval" else None
    return test_rows, train_rows, data.GSM8K_FILES["test.jsonl"]


def prepare_gsm8k(config: EvalConfig, model: str, data_root: Path | None = None) -> Prepared:
    test_rows, train_rows, digest = gsm8k_rows(config, data_root)
    questions = gsm8k.build_questions(config.protocol, test_rows, train_rows, config.shots, config.questions,
                                      config.seed)
    by_id: dict[str, gsm8k.Question] = {}
    stop = gsm8k.stop_sequences(config.protocol)

    def requests() -> Iterator[Request]:
        for question in questions:
            by_id[question.id] = question  # known before its response can arrive
            body = _sampling(config, model)
            if config.protocol == "chat":
                body["messages"] = [{"role": "user", "content": question.prompt}]
                if config.chat_template_kwargs:
                    body["chat_template_kwargs"] = dict(config.chat_template_kwargs)
                yield Request(question.id, "/v1/chat/completions", body)
            else:
                body["prompt"] = question.prompt
                body["stop"] = stop
                yield Request(question.id, "/v1/completions", body)

    def scorer(qid: str, text: str) -> tuple[str | None, bool, dict[str, Any]]:
        result = gsm8k.score(config.protocol, by_id[qid], text)
        return result.extracted, result.correct, result.extras

    return Prepared(requests(), config.questions, scorer, digest)


def prepare_gpqa(config: EvalConfig, model: str, *, zip_password: str | None = None) -> Prepared:
    import os

    path = data.gpqa_path(config.data)
    rows, digest = gpqa.read_rows(path, zip_password=zip_password or os.environ.get("HARNESS_GPQA_ZIP_PASSWORD"))
    count = config.questions if config.questions < len(rows) else None
    items = gpqa.build_items(rows, config.repeats, count)
    answers = {item.id: item.answer for item in items}
    requests = []
    for item in items:
        body = _sampling(config, model)
        body["messages"] = [{"role": "user", "content": item.prompt}]
        if config.chat_template_kwargs:
            body["chat_template_kwargs"] = dict(config.chat_template_kwargs)
        requests.append(Request(item.id, "/v1/chat/completions", body))

    def scorer(qid: str, text: str) -> tuple[str | None, bool, dict[str, Any]]:
        letter = gpqa.extract(gsm8k.strip_reasoning(text))
        return letter, letter == answers[qid], {}

    return Prepared(iter(requests), len(requests), scorer, digest)


def served_model(base_url: str, fallback: str) -> str:
    models = get_json(base_url + "/v1/models")
    try:
        return str(models["data"][0]["id"])
    except (TypeError, KeyError, IndexError):
        return fallback


def run_eval(config: EvalConfig, base_url: str, *, model: str, data_root: Path | None = None,
             stream: TextIO | None = None) -> EvalResult:
    """Ask every question, score every answer; raise EvalInfraError when too many requests failed."""
    prepared = (prepare_gsm8k(config, model, data_root) if config.name == "gsm8k" else prepare_gpqa(config, model))
    progress = Progress(f"{config.name}/{config.protocol}", prepared.count, stream=stream)
    scored: dict[str, tuple[str | None, bool, dict[str, Any]]] = {}

    def on_done(response: Response) -> None:
        if response.error is None:
            scored[response.id] = prepared.scorer(response.id, response.text or "")
        progress.update(scored[response.id][1] if response.error is None else None, sent=response.attempts > 0)

    allowed = math.floor(config.max_error_rate * prepared.count + 1e-9)
    settings = ClientSettings(concurrency=config.concurrency, timeout_s=config.request_timeout_s, max_errors=allowed)
    start = time.perf_counter()
    try:
        responses = run_requests(base_url, prepared.requests, settings, on_done)
    except DeadlineExceeded as late:  # the cell's eval_s: what was answered is kept
        result = assemble_result(config, prepared, late.responses, scored, time.perf_counter() - start)
        raise EvalInfraError("eval_timeout", f"{config.name}: the eval deadline (timeouts.eval_s) passed with "
                             f"{len(late.responses)} of {prepared.count} questions answered",
                             {config.name: result}) from None
    wall = time.perf_counter() - start
    result = assemble_result(config, prepared, responses, scored, wall)
    if result.request_errors > allowed:
        raise EvalInfraError("request_errors", f"{config.name}: {result.request_errors} of {len(responses)} "
                             f"requests failed (allowed {allowed}); first: {_first_error(responses)}",
                             {config.name: result})
    return result


def _first_error(responses: list[Response]) -> str:
    return next((r.error for r in responses if r.error), "")


def assemble_result(config: EvalConfig, prepared: Prepared, responses: list[Response],
                    scored: dict[str, tuple[str | None, bool, dict[str, Any]]], wall: float) -> EvalResult:
    """The EvalResult of scored responses (harness's own client and the lm-eval backend alike)."""
    outcomes = []
    for response in responses:
        if response.error is not None:
            outcomes.append(QuestionOutcome(response.id, False, None, response.error))
        else:
            extracted, correct, _ = scored[response.id]
            outcomes.append(QuestionOutcome(response.id, correct, extracted))
    answered = [o for o in outcomes if o.error is None]
    n = len(answered)
    accuracy = sum(o.correct for o in answered) / n if n else 0.0
    invalid = sum(o.extracted is None for o in answered) / n if n else 0.0
    metrics = {"accuracy": Metric(round(accuracy, 6), n, round(standard_error(accuracy, n), 6) if n else None),
               "invalid_rate": Metric(round(invalid, 6), n)}
    flexible = [scored[o.id][2]["flexible_correct"] for o in answered if "flexible_correct" in scored[o.id][2]]
    if flexible:
        value = sum(flexible) / len(flexible)
        metrics["accuracy_flexible"] = Metric(round(value, 6), len(flexible),
                                              round(standard_error(value, len(flexible)), 6))
    latencies = [r.latency_s for r in responses if r.error is None]
    tokens = sum(r.completion_tokens or 0 for r in responses if r.error is None)
    timings = {"wall_s": round(wall, 3), "questions_per_s": round(len(responses) / wall, 2) if wall else 0.0,
               "output_tokens_per_s": round(tokens / wall, 1) if wall else 0.0}
    if latencies:
        latencies.sort()
        timings.update(latency_mean_s=round(statistics.fmean(latencies), 4),
                       latency_p50_s=round(latencies[len(latencies) // 2], 4),
                       latency_p90_s=round(latencies[int(len(latencies) * 0.9)], 4))
    return EvalResult(name=config.name, protocol=protocol_of(config, dataset_sha256=prepared.dataset_sha256),
                      metrics=metrics, outcomes=tuple(outcomes),
                      request_errors=sum(r.error is not None for r in responses), timings=timings)
