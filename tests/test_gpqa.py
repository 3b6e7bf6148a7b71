"""GPQA with the simple-evals protocol, on synthetic questions (real GPQA is never in the repo)."""

from __future__ import annotations

import json
import random
import re
import zipfile

import pytest

from harness.evals import gpqa
from harness.evals.base import EvalConfig
from harness.evals.registry import run_eval
from tests.helpers import synthetic_csv


def simple_evals_permutations(rows, n_repeats):
    """openai/simple-evals gpqa_eval.py's sampling, transcribed as the peer reference."""
    rng = random.Random(0)
    examples = [dict(row) for row in rows] * n_repeats
    return [example | {"permutation": rng.sample(range(4), 4)} for example in examples]


def test_permutations_and_letters_follow_simple_evals(tmp_path):
    rows, digest = gpqa.read_rows(synthetic_csv(tmp_path / "g.csv"))
    items = gpqa.build_items(rows, repeats=4)
    reference = simple_evals_permutations(rows, 4)
    assert len(items) == 48 and len(digest) == 64
    for item, example in zip(items, reference):
        choices = [example["Correct Answer"], example["Incorrect Answer 1"], example["Incorrect Answer 2"],
                   example["Incorrect Answer 3"]]
        choices = [choices[i] for i in example["permutation"]]
        assert item.answer == "ABCD"[choices.index(example["Correct Answer"])]
        assert item.id.startswith(example["Record ID"] + "#r")
    assert items[0].prompt.startswith("Answer the following multiple choice question.")
    assert len({item.answer for item in items}) == 4  # the shuffles really move the correct choice


@pytest.mark.parametrize(("text", "letter"), [
    ("Thinking...\nAnswer: C", "C"), ("answer: $B$", "B"), ("ANSWER :\tD", "D"), ("The answer is (A)", None),
    ("Answer: b", "b"),
])
def test_extraction_matches_the_simple_evals_pattern(text, letter):
    reference = re.search(r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?", text)
    assert gpqa.extract(text) == letter == (reference.group(1) if reference else None)


def test_zip_with_a_password(tmp_path):
    csv_path = synthetic_csv(tmp_path / "gpqa_diamond.csv", 3)
    with zipfile.ZipFile(tmp_path / "dataset.zip", "w") as archive:
        archive.write(csv_path, "dataset/gpqa_diamond.csv")
    rows, _ = gpqa.read_rows(tmp_path / "dataset.zip")
    assert [r["Record ID"] for r in rows] == ["rec000", "rec001", "rec002"]


def test_not_a_gpqa_file(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a GPQA CSV"):
        gpqa.read_rows(tmp_path / "x.csv")


def test_eval_scores_and_never_leaks_question_text(tmp_path, stub_server, capsys):
    url = stub_server()
    path = synthetic_csv(tmp_path / "g.csv")
    config = EvalConfig(name="gpqa", protocol="simple-evals", shots=0, questions=198, max_tokens=64,
                        temperature=0.0, repeats=2, data=str(path))
    result = run_eval(config, url, model="stub")
    assert result.metrics["accuracy"].value == 1.0 and result.metrics["accuracy"].n == 24
    assert result.protocol["dataset_sha256"] == gpqa.read_rows(path)[1]
    from harness.results import CellResult, cell_result_to_dict

    dumped = json.dumps(cell_result_to_dict(CellResult("c", "s", "ok", {}, evals={"gpqa": result})))
    assert "SECRET-QUESTION-TEXT" not in dumped and "CORRECT choice" not in dumped
    assert "rec003#r1" in dumped
    assert "SECRET" not in capsys.readouterr().err
