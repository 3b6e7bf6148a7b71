"""Every named protocol scores exactly as its upstream, on every completion of the corpus (tests/eval_corpus.py).

SGLang 0.5.17 (few-shot GSM8K, its run_eval GPQA copy) and openai/simple-evals (GPQA) are replayed from goldens
that tools/eval_reference.py recorded by running their own code (their GPQA evals end to end, on a synthetic CSV
that starts with a UTF-8 BOM and holds cells pandas reads as NaN); lm-eval's filters and metric, and sgl-eval's
grader, are installed by the test extra and run here. One disagreement fails.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
from functools import cache
from pathlib import Path

import pytest

from harness.evals import answers, gpqa, gsm8k
from tests.eval_corpus import GSM8K_ANSWERS, completions, digest

GOLDEN = Path(__file__).parent / "golden" / "evals" / "upstream.json.gz"
TEXTS = completions()


@cache
def golden() -> dict:
    return json.loads(gzip.decompress(GOLDEN.read_bytes()))


def test_the_goldens_were_recorded_on_this_corpus():
    assert golden()["corpus_sha256"] == digest(TEXTS) and golden()["completions"] == len(TEXTS) >= 400


def _sglang_encoded(text: str) -> str | None:
    value = gsm8k.sglang_answer_value(text)
    return None if value == gsm8k.INVALID else str(value)


def test_sglang_fewshot_reads_every_completion_as_sglang_does():
    expected = golden()["sglang-fewshot"]
    assert [_sglang_encoded(text) for text in GSM8K_ANSWERS] == expected["labels"]
    disagreements = [(i, TEXTS[i][:40]) for i, text in enumerate(TEXTS) if _sglang_encoded(text) != expected["answers"][i]]
    assert disagreements == []
    # Scored against a label as the eval scores it: never a raise (a >4300-digit run is invalid).
    question = gsm8k.Question("q", 0, "", str(gsm8k.sglang_answer_value(GSM8K_ANSWERS[0])))
    scores = [gsm8k.score("sglang-fewshot", question, text) for text in TEXTS]
    assert sum(s.correct for s in scores) == sum(a == question.label for a in expected["answers"]) > 0


@pytest.fixture(scope="module")
def gpqa_items(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpqa") / "synthetic.csv"
    path.write_bytes(gzip.decompress(base64.b64decode(golden()["gpqa_csv"])))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows, _ = gpqa.read_rows(path)
    return gpqa.build_items(rows, repeats=1)


@pytest.mark.parametrize("protocol", ["simple-evals", "sglang-run-eval"])
def test_gpqa_prompts_letters_and_extraction_agree_with_the_upstream(gpqa_items, protocol):
    upstream = golden()[protocol]
    assert len(gpqa_items) == len(TEXTS)
    prompts = [hashlib.sha256(item.prompt.encode()).hexdigest() for item in gpqa_items]
    assert [i for i, p in enumerate(prompts) if p != upstream["prompt_sha256"][i]] == []
    assert [item.answer for item in gpqa_items] == upstream["correct"]
    extracted = [gpqa.extract(text, protocol) for text in TEXTS]
    assert [(i, TEXTS[i][:40]) for i, e in enumerate(extracted) if e != upstream["extracted"][i]] == []
    correct = [e == item.answer for e, item in zip(extracted, gpqa_items)]
    assert correct == [e == c for e, c in zip(upstream["extracted"], upstream["correct"])]


def test_the_two_gpqa_patterns_really_differ_on_the_corpus():
    simple, sglang = golden()["simple-evals"]["extracted"], golden()["sglang-run-eval"]["extracted"]
    differing = [TEXTS[i] for i in range(len(TEXTS)) if simple[i] != sglang[i]]
    # "Answer:\nA" is read by SGLang's \s* only; "Answer: $C$" by simple-evals' \$? only (the issue's two cases).
    assert "Answer:\nA" in differing and "Answer: $C$" in differing
    assert len(differing) >= 10


def test_reasoning_stripping_is_an_option_recorded_in_the_protocol():
    text = "<think>Answer: A</think>\nAnswer: B"
    assert gpqa.extract(text) == "A" and gpqa.extract(text, strip_reasoning=True) == "B"
    from harness.evals.registry import EVALS
    from harness.strict import Where

    config = EVALS["gpqa"].parse({"protocol": "simple-evals", "strip_reasoning": True}, Where("s"))
    assert EVALS["gpqa"].protocol_of(config)["strip_reasoning"] is True
    assert EVALS["gpqa"].protocol_of(EVALS["gpqa"].parse({"protocol": "sglang-run-eval"}, Where("s")))[
        "strip_reasoning"] is False


lm_eval_installed = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval not installed")


@lm_eval_installed
def test_lm_eval_protocol_scores_as_lm_evals_own_filters_and_metric():
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    strict = RegexFilter(regex_pattern="#### (\\-?[0-9\\.\\,]+)")
    flexible = RegexFilter(regex_pattern="(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]

    def lm_eval_says(filter_, text: str, target: str) -> bool:
        filtered = list(TakeFirstFilter().apply(filter_.apply([[text]], [{}]), [{}]))[0]
        return exact_match_hf_evaluate([filtered], [target], regexes_to_ignore=ignore, ignore_case=True,
                                       ignore_punctuation=False)["exact_match"] == 1.0

    cases = 0
    for target in GSM8K_ANSWERS:
        # chat names no upstream scorer: it is lm-eval's strict-match, else flexible-extract, after the reasoning.
        question = gsm8k.Question("q", 0, "", gsm8k.lm_eval_normalise(target))
        for text in TEXTS:
            answer = answers.strip_reasoning(text)
            expected = lm_eval_says(strict, answer, target) if gsm8k.STRICT_MATCH.search(answer) else \
                lm_eval_says(flexible, answer, target)
            assert gsm8k.score("chat", question, text).correct == expected, (text[:60], target)
        question = gsm8k.Question("q", 0, "", gsm8k.lm_eval_normalise(target))
        for text in TEXTS:
            ours = gsm8k.score("lm-eval", question, text)
            assert (ours.correct, ours.extras["flexible_correct"]) == \
                (lm_eval_says(strict, text, target), lm_eval_says(flexible, text, target)), (text[:60], target)
            cases += 1
    assert cases == len(TEXTS) * len(GSM8K_ANSWERS)


@lm_eval_installed
def test_lm_eval_stop_list_is_local_completions_own():
    from types import SimpleNamespace

    from lm_eval.models.openai_completions import LocalCompletionsAPI

    model = SimpleNamespace(model="m", _max_gen_toks=256)  # the attributes _create_payload reads
    for eos in ("<|endoftext|>", "</s>", "<|im_end|>"):
        payload = LocalCompletionsAPI._create_payload(
            model, "prompt", generate=True, gen_kwargs={"until": list(gsm8k.LM_EVAL_STOP), "max_gen_toks": 256,
                                                       "do_sample": False}, eos=eos)
        assert payload["stop"] == gsm8k.lm_eval_stop(eos)
