"""GSM8K: its protocols, its data, prompts and answer extraction for each protocol (pure functions), its
metric, and the EVAL that registers it (harness.evals.registry).

- sglang-fewshot: python/sglang/test/few_shot_gsm8k.py (shots from the head of the TEST set,
  commas stripped, last integer; the shot rows are asked too, as SGLang does).
- lm-eval: lm_eval/tasks/gsm8k/gsm8k.yaml (5 shots sampled from TRAIN with random.Random(1234),
  one draw per question; strict-match and flexible-extract filters; exact_match with its
  regexes_to_ignore).
  local-completions appends the tokenizer's EOS string to the stop list (`eos_string`: given in the suite, or
  the server's, read as lm-eval's `remote` tokenizer reads it, or from the tokenizer SGLang serves).
- chat: the few-shot prompt as one user message; reasoning stripped; "####" answer, else the last number.
- sgl-eval: sgl-eval's gsm8k (zero-shot, NeMo-Skills' math prompt and grader), run by sgl-eval itself
  (harness.evals.sgleval_backend).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import strict
from harness.errors import ConfigError
from harness.evals import data, sgleval_backend
from harness.evals.answers import strip_reasoning
from harness.evals.base import EvalConfig, EvalContext, Prepared, ProtocolDefaults
from harness.evals.runner import (
    Dataset,
    Option,
    question_eval,
    question_protocol,
    run_questions,
    sampling,
)
from harness.metric_kinds import MetricDef, MetricKind
from harness.results import EvalResult

NAME = "gsm8k"
PROTOCOLS = {
    # python/sglang/test/few_shot_gsm8k.py: first k TEST rows as shots, last-integer extraction.
    "sglang-fewshot": ProtocolDefaults(shots=5, shots_source="test-head", prompt_mode="completion", max_tokens=512),
    # lm_eval/tasks/gsm8k/gsm8k.yaml: 5 shots from TRAIN, strict-match / flexible-extract.
    "lm-eval": ProtocolDefaults(shots=5, shots_source="train", prompt_mode="completion", max_tokens=256),
    # One user message through the chat template (reasoning models), reasoning stripped.
    "chat": ProtocolDefaults(shots=0, shots_source="test-head", prompt_mode="chat", max_tokens=2048),
    # sgl-eval's gsm8k (max_tokens 2048, as SGLang's run_eval calls it).
    "sgl-eval": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="chat", max_tokens=2048),
}
# lm-eval's stop list ends with the served tokenizer's EOS string; harness records it in the protocol.
OPTIONS = {"eos_string": Option(None, strict.string, ("lm-eval",))}
METRICS = (MetricDef("gsm8k.accuracy", MetricKind.ACCURACY, "GSM8K exact-match accuracy", min_effect=0.01),)

# The canonical GSM8K files (openai/grade-school-math), as in ../shared/data/gsm8k/SHA256SUMS.
GSM8K_TEST_SHA256 = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
GSM8K_TRAIN_SHA256 = "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"
GSM8K_BASE_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/"
GSM8K_FILES = {"test.jsonl": GSM8K_TEST_SHA256, "train.jsonl": GSM8K_TRAIN_SHA256}
DATASET = Dataset("gsm8k-test", GSM8K_TEST_SHA256, 1319)
# GSM8K-format rows made at run time (harness.local.problems); their hash is that of the rows generated.
SYNTHETIC = "synthetic-arith-v1"
ALTERNATES = {SYNTHETIC: Dataset(SYNTHETIC, None, 100_000)}

INVALID = -9999999  # SGLang's marker for "no number in the answer"

SGLANG_STOP = ["Question", "Assistant:", "<|separator|>"]
LM_EVAL_STOP = ["Question:", "</s>", "<|im_end|>"]
LM_EVAL_FEWSHOT_SEED = 1234

STRICT_MATCH = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_EXTRACT = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
LM_EVAL_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
LM_EVAL_FALLBACK = "[invalid]"


@dataclass(frozen=True)
class Question:
    id: str
    index: int
    prompt: str  # completion prompt, or the user message in chat mode
    label: str  # the reference answer as the protocol compares it


def question_id(index: int) -> str:
    return f"gsm8k-test-{index:04d}"


# --- SGLang ------------------------------------------------------------------------------------------

def sglang_example(row: dict[str, str], include_answer: bool) -> str:
    text = "Question: " + row["question"] + "\nAnswer:"
    return text + " " + row["answer"] if include_answer else text


_DIGIT_RUN = re.compile(r"\d+")
# CPython's limit on decimal digits in an int literal (3.11+, sys.int_info.default_max_str_digits): past it
# literal_eval raises SyntaxError, which SGLang's get_answer_value catches (INVALID); a degenerate completion
# must score invalid, never end the eval.
_INT_DIGITS_LIMIT = getattr(sys.int_info, "default_max_str_digits", 4300)


def sglang_answer_value(text: str) -> int | float:
    """SGLang's get_answer_value: strip commas, take the last run of digits, ast.literal_eval it."""
    numbers = _DIGIT_RUN.findall(text.replace(",", ""))
    if not numbers:
        return INVALID
    last = numbers[-1]
    if last.isascii() and len(last) <= _INT_DIGITS_LIMIT:
        # literal_eval's result without its parser (a third of the client's CPU per request): a run of
        # ASCII digits is a valid literal unless it has a leading zero and is not all zeros ("007").
        return INVALID if last[0] == "0" and last.strip("0") else int(last)
    try:
        return ast.literal_eval(last)
    except SyntaxError:  # non-ASCII digits ("٣"), or more digits than int() converts: SGLang catches both
        return INVALID


def sglang_questions(test_rows: list[dict[str, str]], shots: int, count: int) -> Iterator[Question]:
    prefix = "".join(sglang_example(test_rows[i], True) + "\n\n" for i in range(shots))
    for i in range(count):
        yield Question(question_id(i), i, prefix + sglang_example(test_rows[i], False),
                       str(sglang_answer_value(test_rows[i]["answer"])))


# --- lm-eval -----------------------------------------------------------------------------------------

def lm_eval_example(row: dict[str, str], include_answer: bool) -> str:
    text = f"Question: {row['question']}\nAnswer:"
    return text + " " + row["answer"] if include_answer else text


def lm_eval_questions(test_rows: list[dict[str, str]], train_rows: list[dict[str, str]], shots: int,
                      count: int, seed: int | None = None) -> Iterator[Question]:
    rng = random.Random(LM_EVAL_FEWSHOT_SEED if seed is None else seed)
    for i in range(count):  # the draws happen in question order, as lm-eval makes them
        examples = rng.sample(train_rows, shots) if shots else []
        context = "".join(lm_eval_example(row, True) + "\n\n" for row in examples)
        yield Question(question_id(i), i, context + lm_eval_example(test_rows[i], False),
                       lm_eval_normalise(test_rows[i]["answer"]))


def lm_eval_normalise(text: str) -> str:
    """exact_match's preprocessing in lm-eval's gsm8k task: regexes_to_ignore, then ignore_case."""
    for regex in LM_EVAL_IGNORE:
        text = regex.sub("", text)
    return text.lower()


def lm_eval_strict(text: str) -> str:
    found = STRICT_MATCH.findall(text)
    return found[0].strip() if found else LM_EVAL_FALLBACK


def lm_eval_flexible(text: str) -> str:
    found = FLEXIBLE_EXTRACT.findall(text)
    if not found:
        return LM_EVAL_FALLBACK
    groups = [g for g in found[-1] if g]
    return groups[0].strip() if groups else LM_EVAL_FALLBACK


# --- chat --------------------------------------------------------------------------------------------

def chat_extract(text: str) -> str:
    answer = strip_reasoning(text)
    strict = lm_eval_strict(answer)
    return strict if strict != LM_EVAL_FALLBACK else lm_eval_flexible(answer)


def chat_questions(test_rows: list[dict[str, str]], shots: int, count: int) -> Iterator[Question]:
    # The SGLang few-shot text as a single user message (the "whole prompt in one message" of chat mode).
    prefix = "".join(sglang_example(test_rows[i], True) + "\n\n" for i in range(shots))
    for i in range(count):
        yield Question(question_id(i), i, prefix + sglang_example(test_rows[i], False),
                       lm_eval_normalise(test_rows[i]["answer"]))


# --- one entry point per step ------------------------------------------------------------------------

def build_questions(protocol: str, test_rows: list[dict[str, str]], train_rows: list[dict[str, str]] | None,
                    shots: int, count: int, seed: int | None = None) -> Iterator[Question]:
    """The questions, built lazily: the client sends the first while the rest are still being written."""
    if protocol == "sglang-fewshot":
        return sglang_questions(test_rows, shots, count)
    if protocol == "lm-eval":
        if train_rows is None:
            raise ValueError("the lm-eval protocol draws its shots from the train split")
        return lm_eval_questions(test_rows, train_rows, shots, count, seed)
    return chat_questions(test_rows, shots, count)


@dataclass(frozen=True)
class Score:
    extracted: str | None  # None when the response holds no answer (counted as invalid)
    correct: bool
    extras: dict[str, Any]


def score(protocol: str, question: Question, text: str) -> Score:
    if protocol == "sglang-fewshot":
        value = sglang_answer_value(text)
        extracted = None if value == INVALID else str(value)
        return Score(extracted, extracted == question.label, {})
    if protocol == "lm-eval":
        strict, flexible = lm_eval_strict(text), lm_eval_flexible(text)
        strict_ok = lm_eval_normalise(strict) == question.label
        flexible_ok = lm_eval_normalise(flexible) == question.label
        extracted = None if strict == LM_EVAL_FALLBACK else strict
        return Score(extracted, strict_ok, {"flexible_correct": flexible_ok})
    answer = chat_extract(text)
    extracted = None if answer == LM_EVAL_FALLBACK else answer
    return Score(extracted, lm_eval_normalise(answer) == question.label, {})


def stop_sequences(protocol: str, eos_string: str | None = None) -> list[str] | None:
    if protocol == "lm-eval":
        return lm_eval_stop(eos_string)
    return {"sglang-fewshot": SGLANG_STOP}.get(protocol)


def lm_eval_stop(eos_string: str | None) -> list[str]:
    """lm-eval's handle_stop_sequences: the task's `until`, then the EOS string unless already there."""
    return LM_EVAL_STOP + ([eos_string] if eos_string is not None and eos_string not in LM_EVAL_STOP else [])


def tokenizer_eos(directory: Path) -> str | None:
    """A Hugging Face tokenizer's eos_token, from tokenizer_config.json (else special_tokens_map.json)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            token = json.loads((directory / name).read_text()).get("eos_token")
        except (OSError, ValueError, AttributeError):
            continue
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str):
            return token
    return None


def server_eos_string(base_url: str) -> str | None:
    """The served tokenizer's EOS string: `/tokenizer_info` (what lm-eval's remote tokenizer reads; vLLM),
    else the tokenizer directory SGLang's `/get_model_info` names, when it is on this machine."""
    from harness.transport import get_json

    info = get_json(base_url + "/tokenizer_info")
    if isinstance(info, dict) and isinstance(info.get("eos_token"), str):
        return info["eos_token"]
    model_info = get_json(base_url + "/get_model_info")
    if isinstance(model_info, dict):
        for key in ("tokenizer_path", "model_path"):
            if isinstance(model_info.get(key), str) and Path(model_info[key]).is_dir():
                return tokenizer_eos(Path(model_info[key]))
    return None


def with_eos_string(config: EvalConfig, base_url: str) -> EvalConfig:
    """The lm-eval config with its EOS string known (the suite's, else the server's), or a ConfigError."""
    if config.params.get("eos_string") is not None:
        return config
    eos = server_eos_string(base_url)
    if eos is None:
        raise ConfigError("gsm8k lm-eval: lm-eval's local-completions stops at the tokenizer's EOS string, and "
                          f"{base_url} tells neither by /tokenizer_info nor /get_model_info: set `eos_string:` "
                          "in the suite's gsm8k eval (or --eos-string)")
    return dataclasses.replace(config, params={**config.params, "eos_string": eos})


# --- data ------------------------------------------------------------------------------------------------

def gsm8k_path(split: str, root: Path | None = None) -> Path:
    """$HARNESS_DATA_DIR/gsm8k/<split>.jsonl, verified by SHA-256 on every read."""
    name = f"{split}.jsonl"
    path = (root or data.data_dir()) / "gsm8k" / name
    if not path.exists():
        raise ConfigError(f"{path}: GSM8K {name} is missing; run `harness data fetch gsm8k` (needs internet), "
                          f"or point HARNESS_DATA_DIR at a directory holding gsm8k/{name}")
    digest = data.sha256_of(path)
    if digest != GSM8K_FILES[name]:
        raise ConfigError(f"{path}: SHA-256 {digest[:12]}... is not GSM8K's {GSM8K_FILES[name][:12]}...; "
                          f"delete it and run `harness data fetch gsm8k`")
    return path


def read_gsm8k(split: str, root: Path | None = None) -> list[dict[str, str]]:
    path = gsm8k_path(split, root)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fetch(root: Path | None = None, **_: Any) -> list[Path]:
    """Download GSM8K's test and train files into the data directory, verified (`harness data fetch`)."""
    from harness.transport import download

    written = []
    for name, digest in GSM8K_FILES.items():
        target = (root or data.data_dir()) / "gsm8k" / name
        if not (target.exists() and data.sha256_of(target) == digest):
            download(GSM8K_BASE_URL + name, target, sha256=digest)
        written.append(target)
    return written


def check_data(config: EvalConfig) -> None:
    """The files `rows` will read exist and are GSM8K's (before any server launches)."""
    if config.dataset != SYNTHETIC:
        gsm8k_path("test")
        if config.protocol == "lm-eval":
            gsm8k_path("train")


def rows(config: EvalConfig, data_root: Path | None) -> tuple[list, list | None, str]:
    """Test rows, train rows (lm-eval's shots only) and the test set's hash, from the configured dataset."""
    if config.dataset == SYNTHETIC:
        from harness.local import problems

        test_rows = problems.held_out_rows(config.questions)
        train_rows = problems.train_rows() if config.protocol == "lm-eval" else None
        return test_rows, train_rows, problems.digest(test_rows)
    test_rows = read_gsm8k("test", data_root)
    train_rows = read_gsm8k("train", data_root) if config.protocol == "lm-eval" else None
    return test_rows, train_rows, GSM8K_FILES["test.jsonl"]


# --- requests ------------------------------------------------------------------------------------------

def prepare(config: EvalConfig, model: str, *, data_root: Path | None = None, **_: Any) -> Prepared:
    """The requests (built lazily, as the client sends them) and the scorer of the protocol."""
    from harness.transport import Request

    if config.protocol == "sgl-eval":  # before the data: the refusal holds where GSM8K is not yet fetched
        raise ConfigError("gsm8k sgl-eval: sgl-eval sends its own requests (harness eval gsm8k --protocol sgl-eval)")
    test_rows, train_rows, digest = rows(config, data_root)
    questions = build_questions(config.protocol, test_rows, train_rows, config.shots, config.questions, config.seed)
    by_id: dict[str, Question] = {}
    stop = stop_sequences(config.protocol, config.params.get("eos_string"))
    # lm-eval's local-completions sends its default seed, so the protocol does too.
    default_seed = LM_EVAL_FEWSHOT_SEED if config.protocol == "lm-eval" else None

    def requests() -> Iterator[Request]:
        for question in questions:
            by_id[question.id] = question  # known before its response can arrive
            body = sampling(config, model, default_seed)
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
        result = score(config.protocol, by_id[qid], text)
        return result.extracted, result.correct, result.extras

    protocol = question_protocol(config, PROTOCOLS[config.protocol], DATASET, digest)
    return Prepared(requests(), config.questions, scorer, digest, protocol)


def run_lm_eval_protocol(config: EvalConfig, base_url: str, model: str, context: EvalContext) -> EvalResult:
    config = with_eos_string(config, base_url)
    return run_questions(config, prepare(config, model, data_root=context.data_root), base_url,
                         stream=context.stream)


def run_sgl_eval(config: EvalConfig, base_url: str, model: str, context: EvalContext) -> EvalResult:
    """The sgl-eval protocol: sgl-eval's own prompt, client and grader on the verified test rows."""
    test_rows, _, digest = rows(config, context.data_root)
    protocol = question_protocol(config, PROTOCOLS[config.protocol], DATASET, digest)
    examples = sgleval_backend.gsm8k_examples(test_rows[:config.questions],
                                              [question_id(i) for i in range(config.questions)])
    return sgleval_backend.run(config, base_url, model, examples, protocol, stream=context.stream)


EVAL = question_eval(name=NAME, protocols=PROTOCOLS, default_protocol="sglang-fewshot", dataset=DATASET,
                     alternates=ALTERNATES, metrics=METRICS, prepare=prepare, fetch=fetch, options=OPTIONS,
                     runs={"lm-eval": run_lm_eval_protocol, "sgl-eval": run_sgl_eval},
                     protocol_keys=sgleval_backend.PROTOCOL_KEYS, check_data=check_data)
