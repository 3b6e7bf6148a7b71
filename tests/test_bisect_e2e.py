"""`harness bisect` on the real local engine: `transformers serve` importing a generated engine source tree
(tests/engine_history.py) at each revision, the MXFP4 cell of the local suite, GSM8K's protocol on the
synthetic problems. Issue 27's CPU demonstration; its figures are in docs/bisect.md."""

from __future__ import annotations

import importlib.util
import math
import time

import pytest
import yaml

from harness.cli import main
from tests.conftest import ROOT
from tests.engine_history import COMMITS, DEFECT_INDEX, DEFECT_SUBJECT, make_history

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None or
                                importlib.util.find_spec("fastapi") is None or
                                importlib.util.find_spec("quark") is None,
                                reason="transformers[serving] and amd-quark not installed")

CELL = "tiny-qwen3/quark-mxfp4/none/tp1"
QUESTIONS = 40  # the defect costs 12 of 40 right answers (0.975 -> 0.675, exact McNemar p = 2.4e-4 < 0.01)


def _suite(tmp_path):
    suite = yaml.safe_load((ROOT / "suites" / "local.yaml").read_text())
    suite["matrix"]["quant"] = ["quark-mxfp4"]
    suite["evals"]["gsm8k"]["questions"] = QUESTIONS
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "local.yaml").write_text(yaml.safe_dump(suite))
    return ["--suites-dir", str(tmp_path / "suites"), "--baselines-dir", str(tmp_path / "baselines"),
            "--bisects-dir", str(tmp_path / "bisects")]


def _bisect(tmp_path, dirs, source, run_id):
    started = time.monotonic()
    code = main(["bisect", "--suite", "local", "--cell", CELL, "--engine-src", str(source), "--good",
                 f"HEAD~{COMMITS - 1}", "--bad", "HEAD", "--run-id", run_id, *dirs])
    return code, time.monotonic() - started


def test_bisect_names_the_commit_that_planted_the_scale_defect(tmp_path, capsys):
    dirs = _suite(tmp_path)
    commits = make_history(tmp_path / "engine", defect=True)
    code, seconds = _bisect(tmp_path, dirs, tmp_path / "engine", "defect")
    out, err = capsys.readouterr()
    print(out, f"wall time {seconds:.0f} s", sep="\n")
    assert code == 0, out + err
    assert out.split("first bad build: ")[1].splitlines()[0] == f"{commits[DEFECT_INDEX][:10]} {DEFECT_SUBJECT}"
    assert "driven by gsm8k.accuracy (mcnemar-exact)" in out
    measured = int(out.split("cells measured: ")[1].split()[0])
    assert measured <= math.ceil(math.log2(COMMITS)) + 2


def test_a_history_whose_bad_end_does_not_reproduce_exits_2(tmp_path, capsys):
    dirs = _suite(tmp_path)
    make_history(tmp_path / "engine", defect=False)  # the table commit builds its table right
    code, seconds = _bisect(tmp_path, dirs, tmp_path / "engine", "healthy")
    out, err = capsys.readouterr()
    print(out, f"wall time {seconds:.0f} s", sep="\n")
    assert code == 2, out + err
    assert "the bad end does not reproduce" in out and "cells measured: 2 " in out
