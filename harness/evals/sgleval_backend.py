"""sgl-eval (PyPI `sgl-eval`, the accuracy client SGLang's CI calls) as an eval backend: protocol `sgl-eval` of
gsm8k, gpqa and aime (its bundled AIME 2024/25/26) runs sgl-eval's own benchmark (its prompt, its OpenAI client and threads, its vendored NeMo-Skills
grader) on the rows harness reads, in a spawned child process (its grader's timeouts need a main thread, and a
cell's eval runs on a thread of its own), and maps every (question, repeat) it scored into harness's result
schema, with harness's own progress line (sgl-eval's bars are off).

An optional extra (`pip install 'sglang-harness[sgl-eval]'`): imported only when the protocol runs.
- Data: harness's, never downloaded by sgl-eval. GSM8K: the verified test rows, turned into sgl-eval's rows by
  its vendored NeMo-Skills `gsm8k/prepare.py` itself (fed a file:// copy, as sgl-eval feeds its own archives).
  GPQA: the CSV read by pandas (harness.evals.gpqa), NaN cells as None (as `datasets` gives them), then the
  vendored `gpqa/prepare.py`'s `format_entry` under `random.seed(42)`, as its `save_data` shuffles the choices.
- Ids: harness's (`gsm8k-test-0042`, `<Record ID>#r<repeat>`), so outcomes pair with earlier runs.
- Nothing is written: no predictions file (sgl-eval writes each problem's text into its per-sample records by
  default), its MCQ grader's one-line temporary files go to a private directory removed on return, and its
  logger is held at ERROR (a failed request is counted as one, never scored wrong).
- Repeats: greedy (temperature 0) with one repeat by default, not sgl-eval's gpqa default of 8 repeats: eight
  greedy samples of one question carry one question's information, and the paired gate wants one outcome per
  question. `repeats: 8` (with a temperature) is honoured: each (question, repeat) is then an outcome of its own.
- Protocol: beside the common keys, sgl-eval's version, the benchmark, its prompt file's SHA-256, the vendored
  NeMo-Skills commit and every sampling field it sends (top_p, min_p, repetition_penalty, the chat template
  kwargs after sgl-eval's benchmark default) are recorded; the first four and `sampling` must match to compare.
- Not honoured: `timeouts.eval_s` inside sgl-eval's client (its own retries and four-hour read timeout apply).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import multiprocessing
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from harness.errors import ConfigError
from harness.evals.base import EvalConfig, EvalInfraError
from harness.evals.progress import Progress
from harness.results import EvalResult

PINNED = "0.1.3"
# The protocol keys sgl-eval's runs add, compared like the common ones.
PROTOCOL_KEYS = ("sgl_eval_version", "benchmark", "prompt", "prompt_sha256", "nemo_skills_commit", "sampling")
# What a figure of sgl-eval's benchmarks counts, for a preset that names no --num-examples.
FULL_SIZE = {"gsm8k": 1319, "gpqa": 198, "aime24": 30, "aime25": 30, "aime26": 30}
# sgl-eval's benchmark -> harness's (eval, dataset): AIME's years are datasets of one eval.
HARNESS_EVAL = {"gsm8k": ("gsm8k", "gsm8k-test"), "gpqa": ("gpqa", "gpqa-diamond"), "aime24": ("aime", "aime24"),
                "aime25": ("aime", "aime25"), "aime26": ("aime", "aime26")}
# Columns the vendored GPQA prepare reads for metadata only (never the prompt or the answer).
GPQA_METADATA = ("Explanation", "Subdomain", "Writer's Difficulty Estimate")


def _import(module: str) -> Any:
    """A module of sgl-eval, of the release harness was checked against, or a ConfigError (harness drives its
    benchmark entry, loaders and vendored prepare scripts as that release has them)."""
    import importlib

    try:
        package = importlib.import_module("sgl_eval")
    except ImportError:
        raise ConfigError(f"the sgl-eval protocol needs sgl-eval: pip install 'sgl-eval=={PINNED}'") from None
    if package.__version__ != PINNED:
        raise ConfigError(f"sgl-eval {package.__version__} is installed; harness's sgl-eval protocol is checked "
                          f"against {PINNED}: pip install 'sgl-eval=={PINNED}'")
    return importlib.import_module(module)


def version() -> str:
    return _import("sgl_eval").__version__


# --- data: harness's rows into sgl-eval's examples, by sgl-eval's own prepare code ------------------------

def gsm8k_examples(rows: list[dict[str, str]], ids: list[str]) -> list[Any]:
    """sgl-eval's gsm8k examples of these GSM8K rows (the vendored NeMo-Skills prepare, run on a local copy)."""
    import json

    prepare = _import("sgl_eval._vendored.nemo_skills.dataset.gsm8k.prepare")
    loader = _import("sgl_eval.evals._loader")
    with tempfile.TemporaryDirectory(prefix="harness-sgl-eval-") as tmp:
        (Path(tmp) / "source-test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        url, file = prepare.URL, prepare.__file__
        prepare.URL, prepare.__file__ = Path(tmp).as_uri() + "/source-{}.jsonl", str(Path(tmp) / "prepare.py")
        try:
            prepare.save_data("test")
        finally:
            prepare.URL, prepare.__file__ = url, file
        prepared = [json.loads(line) for line in (Path(tmp) / "test.jsonl").read_text().splitlines()]
    return [dataclasses.replace(loader._row_to_example(row, i, "gsm8k"), id=ids[i]) for i, row in enumerate(prepared)]


def vendored_root() -> Path:
    return Path(_import("sgl_eval").VENDORED_NS_ROOT)


def bundled_examples(name: str) -> list[Any]:
    """sgl-eval's examples of a benchmark whose data it bundles (AIME), by its own loader."""
    return _import("sgl_eval.evals._loader").load_bundled(name)(None)


def _as_datasets_reads(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def gpqa_examples(rows: list[dict[str, Any]], ids: list[str]) -> list[Any]:
    """sgl-eval's gpqa examples of these GPQA rows: `format_entry` in file order after random.seed(42), as the
    vendored prepare's save_data runs it (the global generator's state is restored afterwards)."""
    prepare = _import("sgl_eval._vendored.nemo_skills.dataset.gpqa.prepare")
    loader = _import("sgl_eval.evals._loader")
    entries = [{**dict.fromkeys(GPQA_METADATA), **{k: _as_datasets_reads(v) for k, v in row.items()}} for row in rows]
    state = random.getstate()
    random.seed(42)
    try:
        formatted = [prepare.format_entry(entry) for entry in entries]
    finally:
        random.setstate(state)
    return [dataclasses.replace(loader._row_to_example(row, i, "gpqa"), id=ids[i]) for i, row in enumerate(formatted)]


# --- the run ---------------------------------------------------------------------------------------------

def generation(config: EvalConfig, default: Any) -> Any:
    """sgl-eval's GenConfig: its benchmark default, overridden by the suite as its CLI would override it."""
    kwargs = {**(default.chat_template_kwargs or {}), **dict(config.chat_template_kwargs)}
    return dataclasses.replace(default, temperature=config.temperature, max_tokens=config.max_tokens,
                               seed=config.seed, chat_template_kwargs=kwargs or None)


def protocol_of(config: EvalConfig, common: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """The recorded protocol: the common keys plus what makes an sgl-eval figure what it is."""
    registry = _import("sgl_eval.registry")
    spec = registry.get(benchmark)
    gen = generation(config, spec.default_gen)
    prompt = _prompt_file(benchmark)
    sources = _import("yaml").safe_load((Path(_import("sgl_eval").VENDORED_NS_ROOT) / "SOURCES.yaml").read_text())
    return {**common, "sgl_eval_version": version(), "benchmark": spec.name,
            "prompt": prompt.stem, "prompt_sha256": hashlib.sha256(prompt.read_bytes()).hexdigest(),
            "nemo_skills_commit": sources.get("synced_from_sha"),
            "sampling": {"top_p": gen.top_p, "min_p": gen.min_p, "repetition_penalty": gen.repetition_penalty,
                         "seed": gen.seed, "chat_template_kwargs": gen.chat_template_kwargs or {}}}


def _prompt_file(benchmark: str) -> Path:
    registry = _import("sgl_eval.evals._registry")
    prompts = _import("sgl_eval.evals._prompts")
    _, prompt = registry._resolve_upstream_metadata(benchmark)
    return Path(prompts.resolve_prompt(prompt))


@contextmanager
def _private_run() -> Iterator[None]:
    """sgl-eval's logger at ERROR and its grader's temporary files in a private directory, for the call."""
    logger = logging.getLogger("sgl_eval")
    level, tempdir = logger.level, tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="harness-sgl-eval-") as tmp:  # mode 0700, removed on exit
        logger.setLevel(logging.ERROR)
        tempfile.tempdir = tmp
        try:
            yield
        finally:
            tempfile.tempdir = tempdir
            logger.setLevel(level)


def outcome_id(config: EvalConfig, example_id: str, repeat: int) -> str:
    """Harness's id of one (question, repeat): GPQA's always name the repeat, as its other protocols' do."""
    return example_id if config.name != "gpqa" and config.repeats == 1 else f"{example_id}#r{repeat}"


@dataclass(frozen=True)
class Graded:
    """One (question, repeat) as sgl-eval sampled and graded it (no prompt or completion text)."""

    id: str
    failed: bool
    correct: bool
    extracted: str | None
    latency_s: float
    completion_tokens: int | None


def benchmark(config: EvalConfig, name: str, base_url: str, model: str, key: str | None, examples: list[Any],
              report: Callable[[Graded], None]) -> None:
    """sgl-eval's run of its benchmark `name` on `examples`; `report` gets each (question, repeat) it graded."""
    registry = _import("sgl_eval.registry")
    spec = registry.get(name)
    sampler = _import("sgl_eval.sampler").ChatCompletionSampler(base_url=base_url + "/v1", model=model,
                                                                 api_key=key or "EMPTY")

    def on_sample_scored(example: Any, repeat: int, sample: Any, score: float, extracted: str | None) -> None:
        latency = (sample.generation_end_time or 0.0) - (sample.generation_start_time or 0.0)
        report(Graded(outcome_id(config, example.id, repeat), sample.finish_reason == "error", score == 1.0,
                      extracted, latency, sample.completion_tokens))

    try:
        with _private_run():
            spec.run(sampler=sampler, gen=generation(config, spec.default_gen), n_repeats=config.repeats,
                     num_examples=None, num_threads=config.concurrency, predictions_writer=on_sample_scored,
                     load_examples=lambda _count: examples)
    finally:
        sampler.client.close()  # its connection pool (the client it was given)


# benchmark's arguments but `report`: (config, name, base_url, model, key, examples)
BenchmarkArguments = tuple[EvalConfig, str, str, str, "str | None", list[Any]]


def _child(connection: Any, arguments: BenchmarkArguments) -> None:
    """The child process's whole work: the benchmark on its main thread, each graded record sent as it comes."""
    os.environ["TQDM_DISABLE"] = "1"  # harness's own progress line reports, from the parent
    try:
        benchmark(*arguments, report=lambda graded: connection.send(("graded", graded)))
        connection.send(("done", None))
    except BaseException as problem:  # noqa: BLE001 - reported to the parent, which raises it there
        connection.send(("error", f"{type(problem).__name__}: {problem}"))
    finally:
        connection.close()


def benchmark_in_a_child(arguments: BenchmarkArguments, progress: Progress) -> list[Graded]:
    """sgl-eval grades on its caller's thread, and its math grader (math_verify) times out by signal.alarm,
    which only a main thread has, while a cell runs its evals on a thread of its own: the benchmark runs in a
    spawned child's main thread, as `sgl-eval run` itself would. Polled, so that an interrupt reaches this
    thread; the child is killed on the way out."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, arguments), name="harness-sgl-eval", daemon=True)
    child.start()
    sender.close()
    graded: list[Graded] = []
    try:
        while True:
            if not receiver.poll(0.2):
                if not child.is_alive():
                    raise RuntimeError(f"sgl-eval's process ended (exit {child.exitcode}) before its answer")
                continue
            kind, payload = receiver.recv()
            if kind == "graded":
                graded.append(payload)
                progress.update(None if payload.failed else payload.correct)
            elif kind == "done":
                return graded
            else:
                raise RuntimeError(f"sgl-eval failed: {payload}")
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()


def run(config: EvalConfig, base_url: str, model: str, examples: list[Any], common: dict[str, Any], *,
        benchmark_name: str | None = None, stream: TextIO | None = None) -> EvalResult:
    """Run sgl-eval's benchmark (`config.name` unless named) on `examples` against the server; one outcome per
    (question, repeat) it was asked, a failed request an error, a sample never taken an error."""
    from harness.evals.base import Prepared
    from harness.evals.runner import assemble_result
    from harness.transport import Response, api_key

    name = benchmark_name or config.name
    protocol = protocol_of(config, common, name)
    progress = Progress(f"{config.name}/{config.protocol}", len(examples) * config.repeats, stream=stream)
    start = time.perf_counter()
    arguments: BenchmarkArguments = (config, name, base_url, model, api_key(base_url), examples)
    graded = {g.id: g for g in benchmark_in_a_child(arguments, progress)}
    wall = time.perf_counter() - start
    responses = [_response(Response, outcome_id(config, example.id, repeat), graded.get(outcome_id(config, example.id, repeat)))
                 for example in examples for repeat in range(config.repeats)]
    scored: dict[str, tuple[str | None, bool, dict[str, Any]]] = {
        g.id: (g.extracted, g.correct, {}) for g in graded.values()}
    prepared = Prepared(iter(()), len(responses), lambda *_: (None, False, {}), common.get("dataset_sha256"),
                        protocol)
    result = assemble_result(config, prepared, responses, scored, wall)
    allowed = math.floor(config.max_error_rate * len(responses) + 1e-9)
    if result.request_errors > allowed:
        raise EvalInfraError("request_errors", f"{config.name}: {result.request_errors} of {len(responses)} "
                             f"sgl-eval requests failed (allowed {allowed})", {config.name: result})
    return result


def _response(response_type: Any, qid: str, graded: Graded | None) -> Any:
    if graded is None:
        return response_type(qid, None, "sgl-eval: never sampled", 0.0)
    if graded.failed:
        return response_type(qid, None, "sgl-eval: the request failed after its retries", 0.0)
    return response_type(qid, "", None, graded.latency_s, graded.completion_tokens)


# --- a preset's expected score as a baseline figure -----------------------------------------------------

@dataclass(frozen=True)
class PresetFigure:
    """An sgl-eval preset's `expected.score`, as a baseline states it (no per-question outcomes)."""

    metric: str
    value: float
    n: int
    protocol: dict[str, Any]
    note: str


def preset_figure(path: Path) -> PresetFigure:
    """Read a user preset with sgl-eval's own parser and state its expected score under its protocol. What the
    preset does not fix is left unknown (not compared): sgl-eval's version, its prompt, and max_tokens when
    unset (sgl-eval then sends none)."""
    preset_module = _import("sgl_eval.preset")
    try:
        preset = preset_module.load_preset(str(path))
    except (OSError, ValueError, TypeError) as problem:
        raise ConfigError(f"{path}: not an sgl-eval preset: {problem}") from None
    if preset.benchmark not in HARNESS_EVAL:
        raise ConfigError(f"{path}: benchmark: {preset.benchmark!r} has no harness eval "
                          f"({', '.join(HARNESS_EVAL)})")
    if preset.expected is None or preset.expected.score is None:
        raise ConfigError(f"{path}: expected.score: the preset states no expected score to import")
    spec = _import("sgl_eval.registry").get(preset.benchmark)
    sampling, default = preset.sampling, spec.default_gen
    kwargs = dict(default.chat_template_kwargs or {})
    if sampling.thinking is not None:
        kwargs["thinking"] = sampling.thinking
    kwargs.update(sampling.chat_template_kwargs or {})
    questions = preset.num_examples or FULL_SIZE[preset.benchmark]
    repeats = preset.n_repeats or spec.default_n_repeats
    evaluation, dataset = HARNESS_EVAL[preset.benchmark]
    protocol = {"eval": evaluation, "protocol": "sgl-eval", "benchmark": preset.benchmark, "dataset": dataset,
                "questions": questions, "repeats": repeats,
                "temperature": default.temperature if sampling.temperature is None else sampling.temperature,
                "max_tokens": sampling.max_tokens,
                "sampling": {"top_p": default.top_p if sampling.top_p is None else sampling.top_p,
                             "min_p": default.min_p, "repetition_penalty": default.repetition_penalty,
                             "seed": None, "chat_template_kwargs": kwargs}}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    note = (f"sgl-eval preset {path.name} (sha256 {digest[:16]}): expected.score {preset.expected.score} on "
            f"{questions} questions x {repeats} repeat(s); no per-question outcomes, so the unpaired test applies")
    if sampling.reasoning_effort is not None:
        note += f"; reasoning_effort {sampling.reasoning_effort} (harness does not send it)"
    return PresetFigure(f"{evaluation}.accuracy", float(preset.expected.score), questions,
                        {k: v for k, v in protocol.items() if v is not None}, note)


__all__ = ["PINNED", "PROTOCOL_KEYS", "PresetFigure", "gpqa_examples", "gsm8k_examples", "preset_figure", "run",
           "version"]
