"""GSM8K protocols: prompts, extraction, and exact agreement with the peers' rules on the real test set."""

from __future__ import annotations

import ast
import importlib.util
import re

import pytest

from harness.evals import gsm8k

needs_lm_eval = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval not installed")


@pytest.fixture(scope="module")
def test_rows():
    return gsm8k.read_gsm8k("test")


@pytest.fixture(scope="module")
def train_rows():
    return gsm8k.read_gsm8k("train")


def sglang_get_answer_value(answer_str):
    """SGLang's rule, transcribed from python/sglang/test/few_shot_gsm8k.py (the peer reference)."""
    answer_str = answer_str.replace(",", "")
    numbers = re.findall(r"\d+", answer_str)
    if len(numbers) < 1:
        return -9999999
    try:
        return ast.literal_eval(numbers[-1])
    except SyntaxError:
        return -9999999


def recorded_responses(rows):
    """Responses of many shapes for every real question, deterministic by index."""
    responses = []
    for index, row in enumerate(rows):
        final = row["answer"].rsplit("#### ", 1)[1].strip()
        reasoning = row["answer"].rsplit("#### ", 1)[0]
        value = int(final.replace(",", ""))
        shape = index % 9
        responses.append([
            " " + row["answer"],                                     # the reference itself
            f" {reasoning}The answer is ${value:,}.",                 # no ####, dollars, commas, period
            f" {reasoning}#### {value + 1}",                          # wrong number
            " I cannot solve this.",                                  # no number at all
            f" #### {value}.00",                                      # decimals
            f" {reasoning}#### {value}\n\nQuestion: next",            # run-on past a stop
            f" So it is {value}. Check: 3 + 4 = 7",                   # a later number spoils the last-number rule
            f" #### {final}",                                         # the reference's own spelling
            f" #### 0{value}",                                        # a leading zero
        ][shape])
    return responses


def test_gsm8k_files_are_verified_by_hash(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    with pytest.raises(Exception, match="is not GSM8K's"):
        gsm8k.read_gsm8k("test", tmp_path)
    with pytest.raises(Exception, match="train.jsonl is missing; run `harness data fetch gsm8k`"):
        gsm8k.read_gsm8k("train", tmp_path)


@pytest.mark.gsm8k
def test_sglang_prompt_shape(test_rows):
    questions = list(gsm8k.sglang_questions(test_rows, shots=5, count=10))
    first = questions[0].prompt
    assert first.startswith("Question: " + test_rows[0]["question"] + "\nAnswer: " + test_rows[0]["answer"] + "\n\n")
    assert first.count("Question: ") == 6 and first.endswith("Question: " + test_rows[0]["question"] + "\nAnswer:")
    assert questions[9].id == "gsm8k-test-0009" and questions[9].label == "460"  # test row 9 ends "#### 460"
    assert gsm8k.stop_sequences("sglang-fewshot") == ["Question", "Assistant:", "<|separator|>"]


@pytest.mark.gsm8k
def test_lm_eval_prompts_draw_shots_from_train_per_question(test_rows, train_rows):
    questions = list(gsm8k.lm_eval_questions(test_rows, train_rows, shots=5, count=3))
    assert questions[0].prompt != questions[1].prompt.replace(test_rows[1]["question"], test_rows[0]["question"])
    assert questions[0].prompt.count("Question: ") == 6
    assert all(row["question"] not in questions[0].prompt for row in test_rows[1:6])


def test_extraction_examples():
    assert gsm8k.sglang_answer_value("It costs $1,234 in total.") == 1234
    assert gsm8k.sglang_answer_value("no digits") == gsm8k.INVALID
    assert gsm8k.lm_eval_strict("so #### -1,000.") == "-1,000."
    assert gsm8k.lm_eval_flexible("The answer is $18.") == "$18."
    assert gsm8k.lm_eval_normalise("$18.") == "18"
    assert gsm8k.chat_extract("<think>maybe 7</think>The total is 42 apples.") == "42"
    assert gsm8k.chat_extract("unfinished thought </think> #### 5") == "5"


@pytest.mark.parametrize("text", ["007", "0", "00", "x 000", "1,000,000", "3 then 0012", "\u0663", "7 \u0663",
                                  "12\u0663", "9" * 50, "1.5", "-3", ""])
def test_fast_answer_value_equals_sglang_literal_eval(text):
    def sglang_get_answer_value(answer_str):  # SGLang's few_shot_gsm8k, verbatim
        answer_str = answer_str.replace(",", "")
        numbers = re.findall(r"\d+", answer_str)
        if len(numbers) < 1:
            return gsm8k.INVALID
        try:
            return ast.literal_eval(numbers[-1])
        except SyntaxError:
            return gsm8k.INVALID

    assert gsm8k.sglang_answer_value(text) == sglang_get_answer_value(text)


@pytest.mark.gsm8k
def test_sglang_scoring_agrees_with_sglang_on_every_real_question(test_rows):
    responses = recorded_responses(test_rows)
    questions = list(gsm8k.sglang_questions(test_rows, shots=0, count=len(test_rows)))
    ours = [gsm8k.score("sglang-fewshot", q, text).correct for q, text in zip(questions, responses)]
    labels = [sglang_get_answer_value(row["answer"]) for row in test_rows]
    theirs = [sglang_get_answer_value(text) == label for text, label in zip(responses, labels)]
    assert ours == theirs
    invalid_ours = sum(gsm8k.score("sglang-fewshot", q, t).extracted is None for q, t in zip(questions, responses))
    assert invalid_ours == sum(sglang_get_answer_value(t) == -9999999 for t in responses)
    assert 0.3 < sum(ours) / len(ours) < 0.8  # the shapes really do differ in outcome


@pytest.mark.gsm8k
@needs_lm_eval
def test_lm_eval_scoring_agrees_with_lm_eval_filters_on_every_real_question(test_rows, train_rows):
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    responses = recorded_responses(test_rows)
    references = [row["answer"] for row in test_rows]
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]
    strict = [r[0] for r in RegexFilter(regex_pattern=r"#### (\-?[0-9\.\,]+)").apply([[t] for t in responses],
                                                                                       test_rows)]
    flexible = [r[0] for r in RegexFilter(regex_pattern=r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
                .apply([[t] for t in responses], test_rows)]

    def lm_eval_correct(predictions):
        return [exact_match_hf_evaluate([p], [r], regexes_to_ignore=ignore, ignore_case=True,
                                        ignore_punctuation=False)["exact_match"] == 1.0
                for p, r in zip(predictions, references)]

    questions = list(gsm8k.lm_eval_questions(test_rows, train_rows, shots=0, count=len(test_rows)))
    scores = [gsm8k.score("lm-eval", q, t) for q, t in zip(questions, responses)]
    assert [s.correct for s in scores] == lm_eval_correct(strict)
    assert [s.extras["flexible_correct"] for s in scores] == lm_eval_correct(flexible)
    assert [s.extracted or "[invalid]" for s in scores] == strict
    assert sum(s.correct for s in scores) != sum(s.extras["flexible_correct"] for s in scores)
