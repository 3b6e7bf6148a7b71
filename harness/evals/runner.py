"""Question evals (GSM8K, GPQA): what they share. A question eval's module builds its requests and scorer
(`prepare`); this module parses its suite mapping, states its protocol, asks every question through the
transport and turns the scored answers into an EvalResult (the result schema).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from harness import strict
from harness.evals.base import Eval, EvalConfig, EvalContext, EvalInfraError, Prepared, ProtocolDefaults
from harness.evals.progress import Progress
from harness.metric_kinds import MetricDef
from harness.results import EvalResult, Metric, QuestionOutcome
from harness.stats import standard_error
from harness.strict import Where

if TYPE_CHECKING:
    from harness.sequential import Reference, Rule
    from harness.transport import Response

@dataclass(frozen=True)
class Dataset:
    """The rows a question eval reads: its name, the SHA-256 known in advance (None: taken from the file
    read, or from the rows generated), and how many questions it holds."""

    name: str
    sha256: str | None
    full_size: int


@dataclass(frozen=True)
class Option:
    """A suite key of one question eval's own, beyond the common ones: its default, its strict parser, and
    the protocols it applies to. Its value is part of the protocol (recorded, compared)."""

    default: Any
    parse: Callable[[Any, Where], Any]
    protocols: tuple[str, ...]


# A protocol's own run step: (config, base_url, model, context) -> EvalResult.
ProtocolRun = Callable[[EvalConfig, str, str, EvalContext], EvalResult]

# The protocol keys of every question eval: what must match for two accuracies to compare.
PROTOCOL_KEYS = ("eval", "protocol", "dataset", "dataset_sha256", "questions", "shots", "shots_source",
                 "prompt_mode", "max_tokens", "temperature", "repeats", "chat_template_kwargs")
_KEYS = ("protocol", "shots", "questions", "max_tokens", "temperature", "repeats", "seed",
         "chat_template_kwargs", "concurrency", "request_timeout_s", "max_error_rate", "data", "dataset")


def question_eval(*, name: str, protocols: Mapping[str, ProtocolDefaults], default_protocol: str,
                  dataset: Dataset, metrics: tuple[MetricDef, ...], prepare: Callable[..., Prepared],
                  alternates: Mapping[str, Dataset] | None = None,
                  fetch: Callable[..., list] | None = None, options: Mapping[str, Option] | None = None,
                  runs: Mapping[str, ProtocolRun] | None = None, protocol_keys: tuple[str, ...] = (),
                  check_data: Callable[[EvalConfig], None] | None = None) -> Eval:
    """The Eval of a question eval: its module gives its protocols, data, prepare (prompts and scorer), its
    own keys (`options`, recorded in the protocol) and the protocols with a run step of their own (`runs`:
    sgl-eval, its own client; lm-eval, which asks the server for its EOS string first), the protocol keys
    those runs add (compared like the common ones), and the check of its data made before any launch."""
    alternates, options, runs = dict(alternates or {}), dict(options or {}), dict(runs or {})

    def parse(value: Any, where: Where) -> EvalConfig:
        return parse_config(name, protocols, dataset, alternates, value, where, options)

    def protocol_of(config: EvalConfig, *, dataset_sha256: str | None = None) -> dict[str, Any]:
        return question_protocol(config, protocols[config.protocol], dataset, dataset_sha256)

    def run(config: EvalConfig, base_url: str, model: str, context: EvalContext) -> EvalResult:
        if config.protocol in runs:
            return runs[config.protocol](config, base_url, model, context)
        return run_questions(config, prepare(config, model, data_root=context.data_root), base_url,
                             stream=context.stream, sequential=context.sequential.get(config.name))

    return Eval(name=name, protocols=protocols, default_protocol=default_protocol, metrics=metrics, parse=parse,
                protocol_of=protocol_of, protocol_keys=PROTOCOL_KEYS + tuple(options) + protocol_keys, run=run,
                describe=describe, prepare=prepare, fetch=fetch, check_data=check_data)


def parse_config(name: str, protocols: Mapping[str, ProtocolDefaults], default: Dataset,
                 alternates: Mapping[str, Dataset], value: Any, where: Where,
                 options: Mapping[str, Option] | None = None) -> EvalConfig:
    """A question eval's suite mapping (or `harness eval`'s flags), strictly."""
    options = options or {}
    doc = strict.mapping(value, where, allowed=_KEYS + tuple(options), required=("protocol",))
    protocol = strict.choice(doc["protocol"], where.key("protocol"), what=f"{name} protocol", choices=protocols)
    params = {}
    for key, option in options.items():
        if key in doc and protocol not in option.protocols:
            raise where.key(key).error(f"applies only to the {' / '.join(option.protocols)} protocol")
        if protocol in option.protocols:
            params[key] = option.parse(doc[key], where.key(key)) if key in doc else option.default
    defaults = protocols[protocol]
    dataset = doc.get("dataset")
    if dataset is not None:
        dataset = strict.choice(dataset, where.key("dataset"), what=f"{name} dataset", choices=alternates)
    full_size = (alternates[dataset] if dataset else default).full_size
    questions = strict.integer(doc.get("questions", full_size), where.key("questions"), minimum=1)
    if questions > full_size:
        raise where.key("questions").error(f"{name} has {full_size} questions, asked for {questions}")
    seed = doc.get("seed")
    kwargs = doc.get("chat_template_kwargs", {})
    if not isinstance(kwargs, dict):
        raise where.key("chat_template_kwargs").error("expected a mapping of template variables")
    data = doc.get("data")
    return EvalConfig(
        name=name,
        protocol=protocol,
        shots=strict.integer(doc.get("shots", defaults.shots), where.key("shots"), minimum=0),
        questions=questions,
        max_tokens=strict.integer(doc.get("max_tokens", defaults.max_tokens), where.key("max_tokens"), minimum=1),
        temperature=strict.number(doc.get("temperature", defaults.temperature), where.key("temperature"),
                                  minimum=0.0),
        repeats=strict.integer(doc.get("repeats", defaults.repeats), where.key("repeats"), minimum=1),
        seed=None if seed is None else strict.integer(seed, where.key("seed")),
        chat_template_kwargs=dict(kwargs),
        concurrency=strict.integer(doc.get("concurrency", 128), where.key("concurrency"), minimum=1),
        request_timeout_s=strict.number(doc.get("request_timeout_s", 600.0), where.key("request_timeout_s"),
                                        minimum=1.0),
        max_error_rate=strict.number(doc.get("max_error_rate", 0.02), where.key("max_error_rate"), minimum=0.0,
                                     maximum=1.0),
        data=None if data is None else strict.string(data, where.key("data")),
        dataset=dataset,
        params=params,
    )


def question_protocol(config: EvalConfig, defaults: ProtocolDefaults, dataset: Dataset,
                      dataset_sha256: str | None) -> dict[str, Any]:
    """The canonical protocol dict of a question eval: what must match for two figures to compare."""
    default_hash = dataset.sha256 if config.dataset is None else None
    return {
        "eval": config.name,
        "protocol": config.protocol,
        "dataset": config.dataset or dataset.name,
        "dataset_sha256": dataset_sha256 or default_hash,
        "questions": config.questions,
        "shots": config.shots,
        "shots_source": defaults.shots_source,
        "prompt_mode": defaults.prompt_mode,
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
        "repeats": config.repeats,
        "chat_template_kwargs": dict(config.chat_template_kwargs),
        **{key: _plain(value) for key, value in config.params.items()},
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def describe(config: EvalConfig) -> str:
    return f"{config.name}:{config.protocol}/{config.shots}-shot/{config.questions}q"


def sampling(config: EvalConfig, model: str, default_seed: int | None = None) -> dict[str, Any]:
    """The request body's model and sampling fields (a protocol may send a seed of its own by default)."""
    body: dict[str, Any] = {"model": model, "max_tokens": config.max_tokens, "temperature": config.temperature}
    seed = config.seed if config.seed is not None else default_seed
    if seed is not None:
        body["seed"] = seed
    return body


def served_model(base_url: str, fallback: str) -> str:
    from harness.transport import get_json

    models = get_json(base_url + "/v1/models")
    if not isinstance(models, dict):
        return fallback
    try:
        return str(models["data"][0]["id"])
    except (TypeError, KeyError, IndexError):
        return fallback


def run_questions(config: EvalConfig, prepared: Prepared, base_url: str, *, stream: TextIO | None = None,
                  sequential: tuple[Reference, Rule] | None = None) -> EvalResult:
    """Ask every question, score every answer; raise EvalInfraError when too many requests failed.
    `sequential`: ask in the fixed order and stop once the verdict against that reference is decided."""
    from harness.transport import ClientSettings, DeadlineExceeded, run_requests

    progress = Progress(f"{config.name}/{config.protocol}", prepared.count, stream=stream)
    scored: dict[str, tuple[str | None, bool, dict[str, Any]]] = {}
    watch = None if sequential is None else SequentialWatch(prepared, *sequential)
    requests = prepared.requests if watch is None else iter(watch.requests)

    def on_done(response: Response) -> None:
        if response.error is None:
            scored[response.id] = prepared.scorer(response.id, response.text or "")
        progress.update(scored[response.id][1] if response.error is None else None, sent=response.attempts > 0)
        if watch is not None:
            watch.answered(response.id, None if response.error else scored[response.id][1])

    allowed = math.floor(config.max_error_rate * prepared.count + 1e-9)
    settings = ClientSettings(concurrency=config.concurrency, timeout_s=config.request_timeout_s, max_errors=allowed)
    start = time.perf_counter()
    try:
        responses = run_requests(base_url, requests, settings, on_done,
                                 stop=None if watch is None else watch.decided)
    except DeadlineExceeded as late:  # the cell's eval_s: what was answered is kept
        result = assemble_result(config, prepared, late.responses, scored, time.perf_counter() - start)
        raise EvalInfraError("eval_timeout", f"{config.name}: the eval deadline (timeouts.eval_s) passed with "
                             f"{len(late.responses)} of {prepared.count} questions answered",
                             {config.name: result}) from None
    wall = time.perf_counter() - start
    result = assemble_result(config, prepared, responses if watch is None else watch.kept(responses), scored, wall)
    if watch is not None:
        result = watch.result(result, len(responses))
    if result.request_errors > allowed:
        raise EvalInfraError("request_errors", f"{config.name}: {result.request_errors} of {len(responses)} "
                             f"requests failed (allowed {allowed}); first: {_first_error(responses)}",
                             {config.name: result})
    return result


class SequentialWatch:
    """The sequential gate's view of an eval (harness.sequential): the requests in the fixed order, the answered
    prefix of that order fed to the Monitor as it grows, and the result cut to the prefix that decided."""

    def __init__(self, prepared: Prepared, reference: Reference, rule: Rule):
        from harness.sequential import Monitor, order_key

        # Built in the protocol's own order first (lm-eval's shot draws and GPQA's shuffles follow it), then
        # reordered: the prompts are the same bytes whatever order they are sent in.
        self.requests = sorted(prepared.requests, key=lambda request: order_key(request.id))
        self.budget = prepared.count
        self.monitor = Monitor(reference, rule)
        self.order = [request.id for request in self.requests]
        self.answers: dict[str, bool | None] = {}  # None: the request failed
        self.next = 0  # the first question of the order not yet fed to the monitor

    def answered(self, question_id: str, correct: bool | None) -> None:
        self.answers[question_id] = correct
        while self.monitor.decision is None and self.next < len(self.order) and self.order[self.next] in self.answers:
            found = self.answers[self.order[self.next]]
            self.next += 1
            if found is not None:  # a failed request is counted (max_error_rate), never scored
                self.monitor.add(self.order[self.next - 1], found)

    def decided(self) -> bool:
        return self.monitor.decision is not None

    def kept(self, responses: list[Response]) -> list[Response]:
        """A decided eval keeps the prefix that decided (answers that came after the decision are not part of
        the sample the verdict is about); an undecided one keeps everything."""
        if not self.decided():
            return responses
        prefix = set(self.order[: self.next])
        return [response for response in responses if response.id in prefix]

    def result(self, result: EvalResult, answered: int) -> EvalResult:
        from harness.sequential import record

        decision = self.monitor.decision
        asked = self.next if decision is not None else answered
        details = {**result.details, "sequential": record(decision, self.budget, asked, answered=answered)}
        return dataclasses.replace(result, details=details)


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
    return EvalResult(name=config.name, protocol=prepared.protocol, metrics=metrics, outcomes=tuple(outcomes),
                      request_errors=sum(r.error is not None for r in responses), timings=timings)
