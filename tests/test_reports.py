"""Golden files for every report rendering. Regenerate with UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.baselines import Baselines
from harness.compare import compare_results, exit_code
from harness.report import render_console, render_junit, render_markdown, write_reports
from harness.results import RunResult, load_run
from harness.suite import GateSettings
from tests.builders import accuracy_entry, failed_result, gsm8k_result, memory_entry, outcomes

GOLDEN = Path(__file__).parent / "golden"


def golden_run():
    base = outcomes(1241, 1319)
    cells = {
        "glm5/quark-mxfp4/mtp/tp8": gsm8k_result("glm5/quark-mxfp4/mtp/tp8", outcomes(1200, 1319),
                                                 memory={"weights_gib": 48.7}, accept_length=2.71),
        "glm5/quark-mxfp4/none/tp8": gsm8k_result("glm5/quark-mxfp4/none/tp8", outcomes(1240, 1319, offset=3)),
        "glm5/fp8/none/tp8": failed_result("glm5/fp8/none/tp8", "oom",
                                           "HIP out of memory while capturing graphs",
                                           "[2026-04-20 12:00:00 TP0] Capture cuda graph begin\n"
                                           "torch.OutOfMemoryError: HIP out of memory | tried 2 GiB"),
    }
    baselines = Baselines("glm5", Path("baselines/glm5.yaml"), {
        "glm5/quark-mxfp4/mtp/tp8": {"gsm8k.accuracy": accuracy_entry(base),
                                     "memory.weights_gib": memory_entry(46.0)},
        "glm5/quark-mxfp4/none/tp8": {"gsm8k.accuracy": accuracy_entry(base)},
        "glm5/fp8/none/tp8": {"gsm8k.accuracy": accuracy_entry(value=0.95, n=1319)},
        "glm5/fp8/mtp/tp8": {"memory.weights_gib": memory_entry(50.0)},
    })
    planned = ["glm5/quark-mxfp4/mtp/tp8", "glm5/quark-mxfp4/none/tp8", "glm5/fp8/none/tp8", "glm5/fp8/mtp/tp8"]
    verdicts = compare_results(planned, cells, baselines, GateSettings())
    run = RunResult(run_id="20261122T120000Z-glm5", suite="glm5", planned=tuple(planned),
                    cells=tuple(cells.values()), verdicts=tuple(v.to_dict() for v in verdicts),
                    exit_code=exit_code(verdicts), started_at="2026-11-22T12:00:00Z",
                    finished_at="2026-11-22T13:00:00Z")
    return run, verdicts


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text()


def test_markdown_summary_golden():
    run, verdicts = golden_run()
    check_golden("summary.md", render_markdown(run, verdicts))


def test_junit_golden_and_well_formed():
    run, verdicts = golden_run()
    text = render_junit(run, verdicts)
    check_golden("junit.xml", text)
    root = ET.fromstring(text.split("\n", 1)[1])
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("6", "2", "2", "1")


def test_console_golden():
    run, verdicts = golden_run()
    check_golden("console.txt", render_console(verdicts, run.exit_code))


def test_the_console_says_why_for_every_row_that_is_not_a_pass():
    run, verdicts = golden_run()
    text = render_console(verdicts, run.exit_code)
    for verdict in verdicts:
        line = f"  {verdict.cell_id} {verdict.metric}: {verdict.meaning.mark}: "
        assert (line in text) == verdict.meaning.explained, line
        assert not verdict.meaning.explained or verdict.reason in text


def test_the_golden_run_has_every_interesting_state():
    run, verdicts = golden_run()
    assert {v.state.value for v in verdicts} == {"REGRESSED", "PASS", "INFRA_ERROR", "MISSING", "NO_BASELINE"}
    assert run.exit_code == 1


def test_written_reports_load_back(tmp_path):
    run, verdicts = golden_run()
    paths = write_reports(tmp_path, run, verdicts)
    assert sorted(p.name for p in paths.values()) == ["junit.xml", "results.json", "summary.md"]
    loaded = load_run(tmp_path)
    assert loaded == run


@pytest.mark.parametrize("name", ["summary.md", "junit.xml", "console.txt"])
def test_golden_files_hold_no_question_text(name):
    assert "Question:" not in (GOLDEN / name).read_text()


def test_the_readme_shows_the_console_golden():
    """The README's sample verdict table is the renderer's output, not a hand-written copy."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "```\n" + (GOLDEN / "console.txt").read_text() + "```\n" in readme
