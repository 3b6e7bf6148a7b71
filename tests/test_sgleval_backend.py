"""Protocol `sgl-eval`: sgl-eval runs against a fake OpenAI-compatible server on 127.0.0.1, every completion of
the corpus served once; harness's outcomes must be sgl-eval's own grader's, and no GPQA text may leave memory."""

from __future__ import annotations

import importlib.util
import json

import pytest

from harness.evals import sgleval_backend
from harness.evals.registry import EVALS, run_eval
from harness.strict import Where
from tests.eval_corpus import completions

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sgl_eval") is None, reason="sgl-eval not installed")
TEXTS = completions()
FIELDS = ["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]


def _csv(path, count):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for i in range(count):
            writer.writerow({"Record ID": f"rec{i:04d}", "Question": f"SECRET-Q{i}: which one?",
                             "Correct Answer": f"SECRET right {i}", "Incorrect Answer 1": "None" if i % 9 == 4 else f"a{i}",
                             "Incorrect Answer 2": f"b{i}", "Incorrect Answer 3": f"c{i}"})
    return path


@pytest.mark.parametrize("part", range(3))  # GPQA Diamond's 198 questions at most per run: the corpus in parts
def test_gpqa_outcomes_are_sgl_evals_own_grades_and_no_text_leaves(tmp_path, stub_server, monkeypatch, capsys, part):
    from sgl_eval.evals._multichoice import make_score_one_fn
    from sgl_eval.types import Sample

    from harness.evals import gpqa
    from harness.results import CellResult, cell_result_to_dict

    texts = TEXTS[part * 198:(part + 1) * 198]
    monkeypatch.chdir(tmp_path)
    path = _csv(tmp_path / "g.csv", len(texts))
    (tmp_path / "replies.json").write_text(json.dumps({f"SECRET-Q{i}: ": text for i, text in enumerate(texts)}))
    url = stub_server("--replies", str(tmp_path / "replies.json"))
    config = EVALS["gpqa"].parse({"protocol": "sgl-eval", "data": str(path), "concurrency": 16}, Where("s"))
    result = run_eval(config, url, model="stub-model")

    rows, _ = gpqa.read_rows(path)
    examples = sgleval_backend.gpqa_examples(rows, [gpqa.record_id(r, i) for i, r in enumerate(rows)])
    grade = make_score_one_fn()
    expected = []
    for example, text in zip(examples, texts):
        score, extracted = grade(example, Sample(text=text))
        expected.append((f"{example.id}#r0", score == 1.0, extracted))
    assert [(o.id, o.correct, o.extracted) for o in result.outcomes] == expected
    assert result.request_errors == 0 and result.metrics["accuracy"].n == len(texts)
    assert result.protocol["sgl_eval_version"] == "0.1.3" and result.protocol["benchmark"] == "gpqa"
    assert result.protocol["sampling"]["chat_template_kwargs"] == {"thinking": True}  # sgl-eval's gpqa default
    dumped = json.dumps(cell_result_to_dict(CellResult("c", "s", "ok", {}, evals={"gpqa": result})))
    captured = capsys.readouterr()
    assert "SECRET" not in dumped + captured.out + captured.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["g.csv", "replies.json"]  # nothing written here


def test_gsm8k_outcomes_are_sgl_evals_own_grades(tmp_path, stub_server):
    from sgl_eval._vendored.nemo_skills.evaluator.math import MathEvaluator
    from sgl_eval.evals._math import make_score_one_fn
    from sgl_eval.types import Sample

    from harness.local import problems

    rows = problems.held_out_rows(len(TEXTS))
    (tmp_path / "replies.json").write_text(json.dumps({row["question"]: text for row, text in zip(rows, TEXTS)}))
    url = stub_server("--replies", str(tmp_path / "replies.json"))
    config = EVALS["gsm8k"].parse({"protocol": "sgl-eval", "dataset": "synthetic-arith-v1", "questions": len(TEXTS),
                                   "concurrency": 16}, Where("s"))
    result = run_eval(config, url, model="stub-model")
    examples = sgleval_backend.gsm8k_examples(rows, [f"gsm8k-test-{i:04d}" for i in range(len(rows))])
    grade = make_score_one_fn(MathEvaluator(config={}))
    expected = [(e.id, *(lambda s: (s[0] == 1.0, s[1]))(grade(e, Sample(text=t)))) for e, t in zip(examples, TEXTS)]
    assert [(o.id, o.correct, o.extracted) for o in result.outcomes] == expected
    assert result.protocol["prompt"] == "math" and result.protocol["protocol"] == "sgl-eval"


def test_its_protocol_keys_are_compared():
    from harness.protocols import protocol_differences

    base = {"eval": "gsm8k", "protocol": "sgl-eval", "sgl_eval_version": "0.1.3", "benchmark": "gsm8k",
            "sampling": {"top_p": 0.95}}
    assert protocol_differences({**base, "sgl_eval_version": "0.1.4"}, base) == \
        ["sgl_eval_version: '0.1.3' -> '0.1.4'"]
    assert protocol_differences({**base, "sampling": {"top_p": 1.0}}, base) != []


def test_the_sgl_eval_protocol_is_refused_by_harness_own_client():
    config = EVALS["gsm8k"].parse({"protocol": "sgl-eval"}, Where("s"))
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="sgl-eval sends its own requests"):
        EVALS["gsm8k"].prepare(config, "m")


def test_in_a_cells_thread_it_grades_in_a_child_main_thread_alike(tmp_path, stub_server):
    """A cell runs its evals on a thread of its own, where math_verify's signal timeout cannot work: sgl-eval
    runs in a child's main thread either way, and grades alike."""
    import threading

    from harness.local import problems

    rows = problems.held_out_rows(40)
    # Half the corpus, half right answers in the spellings the grader must read (boxed, a sentence, "#### N").
    texts = [TEXTS[i * 12] if i % 2 else ("\\boxed{%s}", "The answer is %s.", "#### %s")[i % 3] %
             row["answer"].rsplit("#### ", 1)[1] for i, row in enumerate(rows)]
    (tmp_path / "replies.json").write_text(json.dumps({row["question"]: text for row, text in zip(rows, texts)}))
    url = stub_server("--replies", str(tmp_path / "replies.json"))
    config = EVALS["gsm8k"].parse({"protocol": "sgl-eval", "dataset": "synthetic-arith-v1", "questions": 40},
                                  Where("s"))
    results = {"main": run_eval(config, url, model="stub-model")}
    thread = threading.Thread(target=lambda: results.update(thread=run_eval(config, url, model="stub-model")))
    thread.start()
    thread.join()
    assert [(o.id, o.correct, o.extracted) for o in results["thread"].outcomes] == \
        [(o.id, o.correct, o.extracted) for o in results["main"].outcomes]
    assert sum(o.correct for o in results["main"].outcomes) > 0


PRESET = """\
benchmark: gpqa
n_repeats: 1
sampling: {temperature: 0.0, max_tokens: 2048, thinking: true}
expected: {score: 0.7}
"""


def test_a_presets_expected_score_is_imported_as_a_baseline_and_gated_unpaired(tmp_path, stub_server, capsys):
    from harness.baselines import load_baselines
    from harness.cli import main
    from harness.compare import compare_accuracy
    from harness.metrics import samples
    from harness.results import CellResult
    from harness.suite import GateSettings

    (tmp_path / "mine.yaml").write_text(PRESET)
    argv = ["baseline", "import-sgl-eval", str(tmp_path / "mine.yaml"), "--suite", "s", "--cell", "m/bf16/none/tp1",
            "--baselines-dir", str(tmp_path / "baselines")]
    assert main(argv) == 0
    entry = load_baselines(tmp_path / "baselines" / "s.yaml").entry("m/bf16/none/tp1", "gpqa.accuracy")
    assert (entry.value, entry.n, entry.outcomes_file, entry.provenance.source) == (0.7, 198, None, "imported")
    assert "mine.yaml" in entry.provenance.note and "expected.score 0.7" in entry.provenance.note
    assert entry.protocol["protocol"] == "sgl-eval" and "sgl_eval_version" not in entry.protocol  # unknown
    assert main(argv) == 2 and "has a baseline already" in capsys.readouterr().err

    # A measured sgl-eval figure of that protocol compares with it, by the unpaired test.
    path = _csv(tmp_path / "g.csv", 198)
    (tmp_path / "replies.json").write_text('{"no such marker": "x"}')
    url = stub_server("--replies", str(tmp_path / "replies.json"))  # "" for every question
    config = EVALS["gpqa"].parse({"protocol": "sgl-eval", "data": str(path)}, Where("s"))
    result = run_eval(config, url, model="stub-model")
    sample = samples(CellResult("m/bf16/none/tp1", "s", "ok", {}, evals={"gpqa": result}))["gpqa.accuracy"]
    verdict = compare_accuracy("gpqa.accuracy", sample, entry, GateSettings())
    assert verdict.test == "fisher-exact" and verdict.state.name == "REGRESSED"  # 0.0 against 0.7


def test_a_measured_sgl_eval_figure_round_trips_through_the_baselines(tmp_path, stub_server):
    from harness.baselines import BaselineEntry, Baselines, Provenance, load_baselines, save_baselines

    url = stub_server()
    config = EVALS["gpqa"].parse({"protocol": "sgl-eval", "data": str(_csv(tmp_path / "g.csv", 5))}, Where("s"))
    result = run_eval(config, url, model="stub-model")
    entry = BaselineEntry(metric="gpqa.accuracy", value=0.5, n=5, protocol=result.protocol,
                          provenance=Provenance(source="harness", date="2026-12-05"))
    save_baselines(Baselines("s", tmp_path / "s.yaml", {"c": {"gpqa.accuracy": entry}}))
    assert load_baselines(tmp_path / "s.yaml").entry("c", "gpqa.accuracy").protocol == result.protocol


@pytest.mark.parametrize("year", ["aime24", "aime25", "aime26"])
def test_aime_runs_sgl_evals_bundled_problems_graded_by_it(tmp_path, stub_server, year):
    from sgl_eval._vendored.nemo_skills.evaluator.math import MathEvaluator
    from sgl_eval.evals._math import make_score_one_fn
    from sgl_eval.types import Sample

    examples = sgleval_backend.bundled_examples(year)
    texts = [f"So the answer is \\boxed{{{e.target}}}." if i % 3 else TEXTS[i * 7] for i, e in enumerate(examples)]
    (tmp_path / "replies.json").write_text(json.dumps({e.inputs["problem"]: t for e, t in zip(examples, texts)}))
    url = stub_server("--replies", str(tmp_path / "replies.json"))
    settings = {"protocol": "sgl-eval", **({} if year == "aime25" else {"dataset": year})}
    result = run_eval(EVALS["aime"].parse(settings, Where("s")), url, model="stub-model")
    grade = make_score_one_fn(MathEvaluator(config={}))
    expected = [(e.id, *(lambda s: (s[0] == 1.0, s[1]))(grade(e, Sample(text=t)))) for e, t in zip(examples, texts)]
    assert [(o.id, o.correct, o.extracted) for o in result.outcomes] == expected
    assert result.metrics["accuracy"].value >= 0.6 and result.protocol["benchmark"] == year
    assert result.protocol["dataset"] == year and len(result.protocol["dataset_sha256"]) == 64


def test_another_sgl_eval_release_is_refused_in_one_line(monkeypatch):
    import sgl_eval

    from harness.errors import ConfigError

    monkeypatch.setattr(sgl_eval, "__version__", "0.2.0")
    with pytest.raises(ConfigError, match="sgl-eval 0.2.0 is installed; .* checked against 0.1.3"):
        sgleval_backend.gsm8k_examples([], [])


@pytest.mark.process
def test_a_suite_run_gates_sgl_eval_figures_paired_and_writes_no_gpqa_text(tmp_path, capsys):
    """`harness run` on the SGLang double: the eval on a cell's thread (sgl-eval in a child), the figure
    promoted by `harness baseline update`, the next run gated against it by the paired test."""
    import subprocess
    import sys

    import yaml

    from harness.cli import main
    from tests.fake_cells import FAKE_ENGINES

    suites, baselines, reports = tmp_path / "suites", tmp_path / "baselines", tmp_path / "reports"
    suites.mkdir()
    (suites / "fake.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "name": "fake", "engine": "sglang", "hardware": {"vendor": "amd", "gpus": 1},
        "timeouts": {"launch_s": 30, "eval_s": 120, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES)}},
        "evals": {"gpqa": {"protocol": "sgl-eval", "data": str(_csv(tmp_path / "g.csv", 12)), "concurrency": 4}},
        "matrix": {"quant": ["quark-mxfp4"], "spec": ["none"], "tp": [1]},
        "models": [{"id": "fake", "fix": "glm5-mxfp4-mtp", "checkpoints": {"quark-mxfp4": "fake/model"}}],
    }))
    dirs = ["--suites-dir", str(suites), "--baselines-dir", str(baselines), "--reports-dir", str(reports)]
    # `python -m harness`, as CI runs it: sgl-eval in a child spawned from the cell's thread.
    first = subprocess.run([sys.executable, "-m", "harness", "run", "--suite", "fake", "--run-id", "a", *dirs],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("harness: run a") <= 1 and "SECRET" not in first.stdout + first.stderr
    assert main(["baseline", "update", "--from", str(reports / "a"), "--baselines-dir", str(baselines)]) == 0
    assert main(["run", "--suite", "fake", "--run-id", "b", *dirs]) == 0
    results = json.loads((reports / "b" / "results.json").read_text())
    (verdict,) = [v for v in results["verdicts"] if v["metric"] == "gpqa.accuracy"]
    assert verdict["state"] == "PASS" and verdict["test"] == "mcnemar-exact"
    gpqa_result = results["cells"][0]["evals"]["gpqa"]
    assert len(gpqa_result["outcomes"]) == 12 and gpqa_result["protocol"]["sgl_eval_version"] == "0.1.3"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "g.csv"]
    assert written and not [p for p in written if b"SECRET" in p.read_bytes()]
    assert "SECRET" not in "".join(capsys.readouterr())
