"""`harness bisect`: the search and the step verdicts (pure), then whole bisects over the SGLang test double,
both kinds of build series (git revisions of a source tree, a builds file of interpreters)."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.baselines import BaselineEntry, Provenance
from harness.bisection import Call, Judgement, bounds, driving_verdict, judge, next_index, worst_case_steps
from harness.cli import main
from harness.compare import State, Verdict
from harness.results import CellError, CellResult, EvalResult, Metric, QuestionOutcome
from harness.suite import GateSettings
from tests.fake_cells import FAKE_ENGINES

CELL = "fake/quark-mxfp4/none/tp1"


# --- the search ------------------------------------------------------------------------------------------

def _bisect_with(first_bad: int, builds: int, skipped: frozenset[int] = frozenset()) -> tuple[dict[int, Call], int]:
    """Run the search against an oracle (builds from `first_bad` on are bad); returns the calls and the cell
    runs (both ends included)."""
    calls = {0: Call.GOOD, builds - 1: Call.BAD}
    runs = 2
    while (index := next_index(calls)) is not None:
        runs += 1
        calls[index] = Call.SKIP if index in skipped else Call.BAD if index >= first_bad else Call.GOOD
    return calls, runs


@pytest.mark.parametrize("builds", [2, 3, 5, 8, 16, 17, 33])
def test_the_search_finds_every_first_bad_build_within_log2_plus_two_runs(builds):
    bound = math.ceil(math.log2(builds)) + 2
    assert worst_case_steps(builds) <= bound
    for first_bad in range(1, builds):
        calls, runs = _bisect_with(first_bad, builds)
        found = bounds(calls)
        assert found.found and found.bad == first_bad
        assert runs <= worst_case_steps(builds) <= bound


def test_skipped_builds_are_stepped_around_and_named_when_they_hide_the_answer():
    calls, _ = _bisect_with(9, 16, skipped=frozenset({7}))
    assert bounds(calls).found and bounds(calls).bad == 9  # 7 skipped: its neighbours decide
    calls, _ = _bisect_with(8, 16, skipped=frozenset({7}))
    assert not bounds(calls).found and list(bounds(calls).candidates()) == [7, 8]  # 7 may be the first bad one


# --- the verdicts ----------------------------------------------------------------------------------------

PROVENANCE = Provenance(source="harness", date="2026-12-05")


def _accuracy_result(right: list[bool]) -> CellResult:
    outcomes = tuple(QuestionOutcome(f"q{i}", ok) for i, ok in enumerate(right))
    evaluation = EvalResult(name="gsm8k", metrics={"accuracy": Metric(sum(right) / len(right), len(right))},
                            outcomes=outcomes, protocol={"eval": "gsm8k"})
    return CellResult(cell_id=CELL, suite="fake", status="ok", cell={}, evals={"gsm8k": evaluation})


def _entries(right: list[bool]) -> dict[str, BaselineEntry]:
    return {"gsm8k.accuracy": BaselineEntry("gsm8k.accuracy", PROVENANCE, value=sum(right) / len(right),
                                            n=len(right), protocol={"eval": "gsm8k"},
                                            outcomes={f"q{i}": ok for i, ok in enumerate(right)})}


def test_the_most_significant_regression_drives_unless_a_metric_is_named():
    verdicts = [Verdict(CELL, "memory.weights_gib", State.REGRESSED, test="tolerance"),
                Verdict(CELL, "gsm8k.accuracy", State.REGRESSED, p_value=1e-3, test="mcnemar-exact"),
                Verdict(CELL, "gpqa.accuracy", State.REGRESSED, p_value=1e-9, test="mcnemar-exact"),
                Verdict(CELL, "numerics.kld", State.PASS, p_value=0.4, test="paired-t")]
    assert driving_verdict(verdicts).metric == "gpqa.accuracy"
    assert driving_verdict(verdicts, "memory.weights_gib").metric == "memory.weights_gib"
    assert driving_verdict(verdicts, "numerics.kld") is None  # named, but it did not regress
    assert driving_verdict([Verdict(CELL, "gsm8k.accuracy", State.PASS, p_value=0.3)]) is None
    load = Verdict(CELL, "memory.weights_gib", State.REGRESSED, test="log")
    assert driving_verdict([*verdicts, load]) is load  # a load failure is certain


def test_a_step_is_bad_good_undecided_or_skipped_by_the_gate():
    gate = GateSettings()
    good_side = [True] * 200
    bad_side = [i % 2 == 0 for i in range(200)]  # accuracy 0.5: the bad end's
    driver = Verdict(CELL, "gsm8k.accuracy", State.REGRESSED, p_value=1e-30, test="mcnemar-exact")
    good, bad = _entries(good_side), _entries(bad_side)

    assert judge(_accuracy_result(bad_side), driver, good, bad, gate).call is Call.BAD
    clean = judge(_accuracy_result(good_side), driver, good, bad, gate)
    assert clean.call is Call.GOOD and not clean.undecided and clean.against_bad.state is State.IMPROVED
    # Three wrong answers: no regression against the good build, and clearly better than the bad one.
    assert not judge(_accuracy_result([i >= 3 for i in range(200)]), driver, good, bad, gate).undecided
    # A bad end that lost only 4 answers: a step that lost 2 can be told from neither end.
    mild_bad = _entries([i >= 4 for i in range(200)])
    mild = judge(_accuracy_result([i >= 2 for i in range(200)]), driver, good, mild_bad, gate)
    assert mild.call is Call.GOOD and mild.undecided
    crashed = CellResult(cell_id=CELL, suite="fake", status="infra_error", cell={}, error=CellError("crash", "died", ""))
    assert judge(crashed, driver, good, bad, gate).call is Call.SKIP
    no_load = CellResult(cell_id=CELL, suite="fake", status="infra_error", cell={},
                         error=CellError("fp8_block_divisibility", "not divisible", ""))
    assert judge(no_load, driver, good, bad, gate).call is Call.BAD


def test_when_the_bad_end_did_not_load_the_load_decides():
    gate = GateSettings()
    driver = Verdict(CELL, "memory.weights_gib", State.REGRESSED, test="log")
    loads = CellResult(cell_id=CELL, suite="fake", status="ok", cell={}, memory={"weights_gib": 99.0})
    figures = {"memory.weights_gib": BaselineEntry("memory.weights_gib", PROVENANCE, value=1.0)}
    assert judge(loads, driver, figures, {}, gate) == Judgement(Call.GOOD, reason="loaded")


# --- whole bisects on the SGLang test double -------------------------------------------------------------

def _fake_suite(root: Path, questions: int = 40) -> None:
    (root / "suites").mkdir(parents=True)
    (root / "suites" / "fake.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "name": "fake", "engine": "sglang", "hardware": {"vendor": "amd", "gpus": 1},
        "timeouts": {"launch_s": 30, "eval_s": 60, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES), "FAKE_SGLANG_LOAD_S": "0"}},
        "evals": {"gsm8k": {"protocol": "sglang-fewshot", "shots": 0, "questions": questions, "concurrency": 8}},
        "matrix": {"quant": ["quark-mxfp4"], "spec": ["none"], "tp": [1]},
        "models": [{"id": "fake", "checkpoints": {"quark-mxfp4": "fake/model"}}],
    }))


def _history(root: Path, scenario_by_commit: list[dict[str, str]]) -> Path:
    """A source tree whose sitecustomize sets the test double's knobs: one commit per entry (its knobs)."""
    source = root / "src"
    source.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t.invalid"}

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(source), *args], check=True, capture_output=True, env=env)

    git("init", "-q", "-b", "main")
    for number, knobs in enumerate(scenario_by_commit):
        (source / "sitecustomize.py").write_text(
            "import os\n" + "".join(f"os.environ[{k!r}] = {v!r}\n" for k, v in knobs.items()))
        (source / "VERSION").write_text(f"{number}\n")
        git("add", "-A")
        git("commit", "-q", "-m", f"commit {number}")
    return source


def _dirs(root: Path) -> list[str]:
    return ["--suites-dir", str(root / "suites"), "--baselines-dir", str(root / "baselines"),
            "--bisects-dir", str(root / "bisects")]


@pytest.mark.gsm8k
def test_bisect_over_git_revisions_names_the_commit_that_broke_accuracy(tmp_path, capsys):
    _fake_suite(tmp_path)
    wrong = {"FAKE_SGLANG_GSM8K_WRONG_EVERY": "2"}
    source = _history(tmp_path, [{}] * 5 + [wrong] * 3)
    code = main(["bisect", "--suite", "fake", "--cell", "fake/*", "--engine-src", str(source), "--good", "HEAD~7",
                 "--bad", "HEAD", "--run-id", "b1", *_dirs(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "first bad build: " in out and "commit 5" in out.split("first bad build: ")[1].splitlines()[0]
    assert "driven by gsm8k.accuracy (mcnemar-exact)" in out
    measured = int(out.split("cells measured: ")[1].split()[0])
    assert measured <= worst_case_steps(8)
    steps = sorted(p.name for p in (tmp_path / "bisects" / "b1" / "steps").iterdir())
    assert len(steps) == measured and steps[0] == "build-00" and "build-07" in steps
    assert not (tmp_path / "bisects" / "b1" / "worktrees").exists() or \
        not any((tmp_path / "bisects" / "b1" / "worktrees").iterdir())  # every checkout removed
    assert (tmp_path / "bisects" / "b1" / "evidence.md").read_text() == out.rsplit("bisect: ", 1)[0]


@pytest.mark.gsm8k
def test_a_bad_end_that_does_not_reproduce_exits_2(tmp_path, capsys):
    _fake_suite(tmp_path)
    source = _history(tmp_path, [{}] * 4)
    code = main(["bisect", "--suite", "fake", "--cell", CELL, "--engine-src", str(source), "--good", "HEAD~3",
                 "--bad", "HEAD", "--run-id", "b2", *_dirs(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 2 and "the bad end does not reproduce" in out
    assert "cells measured: 2 " in out


def _interpreter(path: Path, knobs: dict[str, str]) -> Path:
    """A Python "build": a wrapper that sets the test double's knobs and runs this interpreter."""
    exports = "".join(f"export {k}={v}\n" for k, v in knobs.items())
    path.write_text(f"#!/bin/sh\n{exports}exec {sys.executable} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.gsm8k
def test_a_builds_file_with_a_load_failure_and_a_crash_skips_and_says_what_it_cannot_tell(tmp_path, capsys):
    _fake_suite(tmp_path)
    builds = [_interpreter(tmp_path / "py0", {}),
              _interpreter(tmp_path / "py1", {"FAKE_SGLANG_SCENARIO": "crash_during_load"}),
              _interpreter(tmp_path / "py2", {"FAKE_SGLANG_SCENARIO": "fp8_block"})]
    (tmp_path / "builds.txt").write_text("# oldest first\n" + "\n".join(map(str, builds)) + "\n")
    code = main(["bisect", "--suite", "fake", "--cell", CELL, "--builds", str(tmp_path / "builds.txt"),
                 "--run-id", "b3", *_dirs(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 3, out  # the crash hides whether py1 or py2 brought the load failure
    assert "load failure" in out and "skip" in out and "the first bad build is one of 2" in out


@pytest.mark.gsm8k
def test_ctrl_c_keeps_the_steps_and_resume_measures_only_what_is_missing(tmp_path, capsys, monkeypatch):
    from harness import pipeline

    _fake_suite(tmp_path)
    source = _history(tmp_path, [{}] * 3 + [{"FAKE_SGLANG_GSM8K_WRONG_EVERY": "2"}] * 5)
    real_run, calls = pipeline.run, []

    def interrupted_third(request):
        calls.append(request)
        return 130 if len(calls) == 3 else real_run(request)

    monkeypatch.setattr(pipeline, "run", interrupted_third)
    argv = ["bisect", "--suite", "fake", "--cell", CELL, "--engine-src", str(source), "--good", "HEAD~7", "--bad",
            "HEAD", "--run-id", "b4", *_dirs(tmp_path)]
    assert main(argv) == 130
    _, err = capsys.readouterr()
    assert "harness bisect --resume" in err
    monkeypatch.setattr(pipeline, "run", real_run)
    code = main(["bisect", "--resume", str(tmp_path / "bisects" / "b4"), *_dirs(tmp_path)[:4]])
    out, _ = capsys.readouterr()
    assert code == 0 and "commit 3" in out.split("first bad build: ")[1].splitlines()[0]
    assert "2 kept from an earlier invocation" in out


def test_memory_and_numerics_regressions_are_judged_by_their_own_gates():
    gate = GateSettings()
    # Memory (host RSS: 20%, at least 0.05 GiB): the bad end +35%; a step +30% is bad, +19% good but within the
    # bad end's tolerance too (undecided), +1% good and beyond the bad end's tolerance (decided).
    rss = "memory.host_rss_peak_gib"
    good = {rss: BaselineEntry(rss, PROVENANCE, value=1.0)}
    bad = {rss: BaselineEntry(rss, PROVENANCE, value=1.35)}
    driver = Verdict(CELL, rss, State.REGRESSED, test="tolerance")

    def step(value: float) -> Judgement:
        result = CellResult(cell_id=CELL, suite="fake", status="ok", cell={}, memory={"host_rss_peak_gib": value})
        return judge(result, driver, good, bad, gate)

    assert step(1.3).call is Call.BAD
    assert step(1.19).call is Call.GOOD and step(1.19).undecided
    assert step(1.01).call is Call.GOOD and not step(1.01).undecided
    # Numerics (KLD per window, paired t-test): the bad end's windows rose by 0.05 nats.
    kld = "numerics.kld"
    windows = {f"w{i}": 0.01 + 0.001 * (i % 7) for i in range(64)}
    good = {kld: BaselineEntry(kld, PROVENANCE, value=0.013, n=64, values=windows)}
    bad = {kld: BaselineEntry(kld, PROVENANCE, value=0.063, n=64, values={k: v + 0.05 for k, v in windows.items()})}
    driver = Verdict(CELL, kld, State.REGRESSED, p_value=1e-40, test="paired-t")

    def numerics_step(shift: float) -> Judgement:
        values = {k: v + shift + 0.0001 * (i % 3) for i, (k, v) in enumerate(windows.items())}
        evaluation = EvalResult(name="numerics", protocol={}, metrics={"kld": Metric(0.013 + shift, 64)},
                                item_values={"kld": values})
        result = CellResult(cell_id=CELL, suite="fake", status="ok", cell={}, evals={"numerics": evaluation})
        return judge(result, driver, good, bad, gate)

    assert numerics_step(0.05).call is Call.BAD
    assert numerics_step(0.0).call is Call.GOOD and not numerics_step(0.0).undecided


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    _fake_suite(tmp_path)
    source = _history(tmp_path, [{}] * 3)
    base = ["bisect", "--suite", "fake", "--cell", CELL, *_dirs(tmp_path)]
    assert main([*base, "--engine-src", str(source), "--good", "nope", "--bad", "HEAD"]) == 2
    assert "harness: error: --good nope: no such commit in" in capsys.readouterr().err
    assert main([*base, "--engine-src", str(source), "--good", "HEAD", "--bad", "HEAD~2"]) == 2
    assert "--good HEAD is not an ancestor of --bad HEAD~2" in capsys.readouterr().err
    assert main([*base, "--engine-src", str(source), "--good", "HEAD~2", "--bad", "HEAD", "--metric", "gsm8k.acc"]) == 2
    assert "--metric gsm8k.acc: no such metric" in capsys.readouterr().err
    (tmp_path / "builds.txt").write_text(f"{sys.executable}\n/no/such/venv\n")
    assert main([*base, "--builds", str(tmp_path / "builds.txt")]) == 2
    assert "line 2: /no/such/venv is neither an executable Python nor a virtualenv" in capsys.readouterr().err
    assert not (tmp_path / "bisects").exists()  # nothing was started
