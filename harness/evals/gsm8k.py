"""GSM8K: prompts and answer extraction for each protocol, as pure functions.

- sglang-fewshot: python/sglang/test/few_shot_gsm8k.py (shots from the head of the TEST set,
  commas stripped, last integer; the shot rows are asked too, as SGLang does).
- lm-eval: lm_eval/tasks/gsm8k/gsm8k.yaml (5 shots sampled from TRAIN with random.Random(1234),
  one draw per question; strict-match and flexible-extract filters; exact_match with its
  regexes_to_ignore).
- chat: the few-shot prompt as one user message; reasoning stripped; "####" answer, else the last number.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

INVALID = -9999999  # SGLang's marker for "no number in the answer"

SGLANG_STOP = ["Question", "Assistant:", "<|separator|>"]
LM_EVAL_STOP = ["Question:", "</s>", "<|im_end|>"]
LM_EVAL_FEWSHOT_SEED = 1234

STRICT_MATCH = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_EXTRACT = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
LM_EVAL_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
LM_EVAL_FALLBACK = "[invalid]"
REASONING = re.compile(r"(?s)<think>.*?</think>|^.*?</think>")


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


def sglang_answer_value(text: str) -> int | float:
    """SGLang's get_answer_value: strip commas, take the last run of digits, ast.literal_eval it."""
    numbers = _DIGIT_RUN.findall(text.replace(",", ""))
    if not numbers:
        return INVALID
    last = numbers[-1]
    if last.isascii():
        # literal_eval's result without its parser (a third of the client's CPU per request): a run of
        # ASCII digits is a valid literal unless it has a leading zero and is not all zeros ("007").
        return INVALID if last[0] == "0" and last.strip("0") else int(last)
    try:
        return ast.literal_eval(last)
    except SyntaxError:  # non-ASCII digits ("٣"): \d matches them, Python's grammar does not
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

def strip_reasoning(text: str) -> str:
    return REASONING.sub("", text).strip()


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


def stop_sequences(protocol: str) -> list[str] | None:
    return {"sglang-fewshot": SGLANG_STOP, "lm-eval": LM_EVAL_STOP}.get(protocol)
