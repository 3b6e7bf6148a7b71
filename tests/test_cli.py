"""The CLI end to end, in process: output, one-line errors and exit codes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from harness import schema
from harness.baselines import Baselines
from harness.cli import main
from harness.compare import compare_results, exit_code
from harness.report import write_reports
from harness.results import RunResult
from harness.suite import GateSettings
from tests.builders import accuracy_entry, gsm8k_result, outcomes
from tests.conftest import ROOT

SUITES = ["--suites-dir", str(ROOT / "suites")]


def test_list_prints_cells_with_fix_and_pr(capsys):
    assert main(["list", "--suite", "kimi", *SUITES]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("kimi-k26/quark-mxfp4/none/tp4  [kimi-k26-quark-prefix #23408]  gsm8k:lm-eval/5-shot")
    assert any(line.startswith("kimi-k25/quark-mxfp4/eagle3/tp8") and "gpqa:sglang-run-eval" in line for line in out)


def test_dry_run_prints_argv_and_env_and_launches_nothing(capsys, tmp_path):
    code = main(["run", "--suite", "glm5", "--dry-run", "--cell", "*/mtp/*", *SUITES,
                 "--reports-dir", str(tmp_path / "reports"), "--baselines-dir", str(ROOT / "baselines")])
    out = capsys.readouterr().out
    assert code == 0
    assert "glm5/quark-mxfp4/mtp/tp8  [glm5-mxfp4-mtp #23219]" in out
    assert "  env  HIP_VISIBLE_DEVICES=0,1,2,3,4,5,6,7" in out and "  env  SGLANG_USE_AITER=1" in out
    assert "-m sglang.launch_server --model-path amd/GLM-5-MXFP4" in out and "--speculative-algorithm NEXTN" in out
    assert "\n1 cell; nothing launched" in out
    assert not (tmp_path / "reports").exists()


def test_unknown_suite_is_a_one_line_usage_error(capsys):
    assert main(["list", "--suite", "kmi", *SUITES]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown suite 'kmi'; did you mean 'kimi'?" in err


def test_bad_suite_file_is_a_one_line_error_naming_file_and_key(capsys, tmp_path, base_suite):
    base_suite["matrix"]["tp"] = [16]
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(base_suite))
    assert main(["list", "--suite", "demo", "--suites-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: {tmp_path / 'demo.yaml'}: matrix.tp: tp 16 is larger than")
    assert "Traceback" not in err


def test_validate_checks_the_shipped_files(capsys):
    assert main(["validate", *SUITES, "--baselines-dir", str(ROOT / "baselines")]) == 0
    out = capsys.readouterr().out
    suites, baselines = len(list((ROOT / "suites").glob("*.yaml"))), len(list((ROOT / "baselines").glob("*.yaml")))
    assert re.search(rf"^checked {suites} suites \(\d+ cells\) and {baselines} baseline files \(\d+ entries\): "
                     r"no problems$", out, re.M), out
    assert "tiny-qwen3__bf16__none__tp1.numerics.npz: numerics reference, 64 windows of 128 tokens" in out


def test_validate_refuses_a_baseline_for_an_unknown_cell(capsys, tmp_path):
    shutil.copy(ROOT / "baselines" / "glm5.yaml", tmp_path / "glm5.yaml")
    text = (tmp_path / "glm5.yaml").read_text().replace("glm5/quark-mxfp4/mtp/tp8", "glm5/quark-mxfp4/mtp/tp4")
    (tmp_path / "glm5.yaml").write_text(text)
    assert main(["validate", *SUITES, "--baselines-dir", str(tmp_path)]) == 2
    assert ("cells.glm5/quark-mxfp4/mtp/tp4: no such cell in suite 'glm5'; did you mean 'glm5/quark-mxfp4/mtp/tp8'?"
            in capsys.readouterr().err)


def test_validate_refuses_a_baseline_whose_protocol_the_suite_does_not_run(capsys, tmp_path):
    shutil.copy(ROOT / "baselines" / "glm5.yaml", tmp_path / "glm5.yaml")
    text = (tmp_path / "glm5.yaml").read_text().replace("protocol: sglang-fewshot", "protocol: lm-eval")
    (tmp_path / "glm5.yaml").write_text(text)
    assert main(["validate", *SUITES, "--baselines-dir", str(tmp_path)]) == 2
    assert "protocol: differs from the suite's, so the gate could never compare: protocol: 'lm-eval' -> " \
           "'sglang-fewshot'" in capsys.readouterr().err


def write_run_dir(path: Path, table: dict[str, bool], run_id: str, baseline: dict | None = None) -> Path:
    result = gsm8k_result("glm5/quark-mxfp4/mtp/tp8", table)
    cells = {result.cell_id: {"gsm8k.accuracy": accuracy_entry(baseline)}} if baseline else {}
    verdicts = compare_results([result.cell_id], {result.cell_id: result}, Baselines("glm5", path, cells),
                               GateSettings())
    run = RunResult(run_id=run_id, suite="glm5", planned=(result.cell_id,), cells=(result,),
                    verdicts=tuple(v.to_dict() for v in verdicts), exit_code=exit_code(verdicts),
                    started_at="2026-11-22T00:00:00Z")
    write_reports(path, run, verdicts)
    return path


def test_compare_two_runs(capsys, tmp_path):
    a = write_run_dir(tmp_path / "a", outcomes(1241, 1319), "a")
    b = write_run_dir(tmp_path / "b", outcomes(1180, 1319), "b")
    assert main(["compare", str(a), str(b)]) == 1
    assert "REGRESSED" in capsys.readouterr().out
    assert main(["compare", str(a), str(a), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [v["state"] for v in document["verdicts"]] == ["PASS"]


def test_baseline_update_dry_run_writes_nothing_then_update_writes(capsys, tmp_path):
    run = write_run_dir(tmp_path / "run", outcomes(90, 100), "run")
    baselines = tmp_path / "baselines"
    assert main(["baseline", "update", "--from", str(run), "--baselines-dir", str(baselines), "--dry-run"]) == 0
    assert "would update  glm5/quark-mxfp4/mtp/tp8 gsm8k.accuracy: none -> 0.9 (n=100)" in capsys.readouterr().out
    assert not baselines.exists()
    assert main(["baseline", "update", "--from", str(run), "--baselines-dir", str(baselines)]) == 0
    assert (baselines / "glm5.yaml").exists()
    assert main(["report", str(run)]) == 0
    assert "no baseline" in capsys.readouterr().out


def test_upgrade_applies_registered_migrations(capsys, tmp_path, monkeypatch):
    run = write_run_dir(tmp_path / "run", outcomes(9, 10), "run")
    monkeypatch.setitem(schema.CURRENT_VERSIONS, "harness.run", 2)
    monkeypatch.setitem(schema.MIGRATIONS, "harness.run", {1: lambda doc: {**doc, "note": "migrated"}})
    assert main(["upgrade", str(run / "results.json")]) == 0
    assert "harness.run schema 1 -> 2" in capsys.readouterr().out
    document = json.loads((run / "results.json").read_text())
    assert document["schema_version"] == 2 and document["note"] == "migrated"


def test_a_result_without_a_migration_path_is_refused(capsys, tmp_path, monkeypatch):
    run = write_run_dir(tmp_path / "run", outcomes(9, 10), "run")
    monkeypatch.setitem(schema.CURRENT_VERSIONS, "harness.run", 2)
    assert main(["report", str(run)]) == 2
    assert "no migration from harness.run schema 1 to 2" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_documents_exit_codes(capsys, argv):
    with pytest.raises(SystemExit):
        main(argv)
    assert "130  interrupted" in capsys.readouterr().out


def _parsers(parser):
    """The parser and every subparser under it."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_takes_a_prefix_for_a_flag(capsys):
    from harness.cli import build_parser

    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 15 and all(parser.allow_abbrev is False for parser in parsers)
    # `--suite` on a command that has only `--suites-dir` was silently read as the directory
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--suite", "local"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --suite local" in capsys.readouterr().err


def test_report_exits_with_the_runs_exit_code(capsys, tmp_path):
    regressed = write_run_dir(tmp_path / "regressed", outcomes(1180, 1319), "regressed", baseline=outcomes(1241, 1319))
    assert main(["report", str(regressed)]) == 1
    assert capsys.readouterr().out.rstrip().endswith("1 regressed; exit code 1")
    assert main(["report", str(write_run_dir(tmp_path / "fine", outcomes(9, 10), "fine"))]) == 0


def test_validate_reports_every_problem_of_every_file(capsys, tmp_path):
    suites, baselines = tmp_path / "suites", tmp_path / "baselines"
    shutil.copytree(ROOT / "suites", suites)
    shutil.copytree(ROOT / "baselines", baselines)
    glm5 = yaml.safe_load((suites / "glm5.yaml").read_text())
    glm5["timeouts"] = {"launch_s": "soon"}
    glm5["models"][0]["trust_remote_code"] = "yes"
    (suites / "glm5.yaml").write_text(yaml.safe_dump(glm5))
    kimi = (baselines / "kimi.yaml").read_text()
    first_cell = next(line.strip().rstrip(":") for line in kimi.splitlines() if line.startswith("  ") and
                      not line.startswith("   "))
    (baselines / "kimi.yaml").write_text(kimi.replace(first_cell, first_cell.replace("tp", "tp1"), 1))
    (baselines / "qwen3-next.yaml").write_text("kind: harness.baselines\nschema_version: 1\nsuite: qwen3-next\n")
    assert main(["validate", "--suites-dir", str(suites), "--baselines-dir", str(baselines)]) == 2
    out, err = capsys.readouterr()
    problems = err.splitlines()
    assert all(line.startswith("harness: error: ") for line in problems)
    assert any("glm5.yaml: timeouts.launch_s: expected a number" in line for line in problems), err
    assert any("glm5.yaml: models[0].trust_remote_code" in line for line in problems), err
    assert any("kimi.yaml: cells." in line and "no such cell in suite 'kimi'" in line for line in problems), err
    assert any("qwen3-next.yaml: missing required key 'cells'" in line for line in problems), err
    assert out.rstrip().endswith(f"{len(problems)} problems in 3 files") and len(problems) >= 4
    assert "skip  " in out and "baselines/glm5.yaml: not checked against suite glm5" in out  # its suite is broken
    assert re.search(r"^ok  .*suites/kimi.yaml: \d+ cells$", out, re.M)


def test_a_missing_directory_is_named(capsys, tmp_path):
    assert main(["validate", "--suites-dir", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such directory (--suites-dir)" in capsys.readouterr().err
    assert main(["list", "--suite", "local", "--suites-dir", str(tmp_path / "nope")]) == 2
    assert "no such directory (--suites-dir), so no suite 'local'" in capsys.readouterr().err
    assert main(["validate", *SUITES, "--baselines-dir", str(tmp_path / "nope")]) == 2
    assert "no such directory (--baselines-dir)" in capsys.readouterr().err


def test_the_fixes_table_keeps_its_column_on_long_cell_ids(capsys, tmp_path):
    suites = tmp_path / "suites"
    shutil.copytree(ROOT / "suites", suites)
    glm5 = yaml.safe_load((suites / "glm5.yaml").read_text())
    glm5["models"][0]["id"] = "glm5-with-a-model-id-far-longer-than-the-old-fixed-column-of-52"
    (suites / "glm5.yaml").write_text(yaml.safe_dump(glm5))
    assert main(["fixes", "--suites-dir", str(suites), "--reports-dir", str(tmp_path / "reports")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.endswith("never run")]
    assert any("far-longer" in row for row in rows) and len(rows) > 5
    assert len({row.index("never run") for row in rows}) == 1  # one column, whatever the ids


def test_preflight_that_checked_nothing_does_not_pass(capsys, monkeypatch, tmp_path):
    """Every checkpoint of the suite unreadable (hub ids, no token, no cache): exit 3, never a silent 0."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["preflight", "--suite", "glm5", *SUITES, "--engine-version", "0.5.17"]) == 3
    out, err = capsys.readouterr()
    assert "SKIPPED" in out and "0 cells checked, 0 failed, 2 skipped" in err and "checked nothing" in err


@pytest.mark.parametrize(("argv", "usage", "hint"), [
    (["run", "--suite", "glm5", "--dry-runn"], "usage: harness run ", "--dry-runn; did you mean --dry-run?"),
    (["baseline", "update", "--from", "x", "--forse"], "usage: harness baseline update ",
     "--forse; did you mean --force?"),
])
def test_an_unknown_option_gets_its_commands_usage_and_the_closest_option(capsys, argv, usage, hint):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(usage) and f"unrecognized arguments: {hint}" in err


def test_a_yaml_syntax_error_keeps_file_line_column_and_a_caret_under_the_line(capsys, tmp_path):
    (tmp_path / "broken.yaml").write_text("name: broken\nmatrix: {quant: [bf16\nmodels: []\n")
    assert main(["list", "--suite", "broken", "--suites-dir", str(tmp_path)]) == 2
    first, source, caret = capsys.readouterr().err.splitlines()
    assert first == (f"harness: error: {tmp_path / 'broken.yaml'}:3:7: not valid YAML: expected ',' or ']', but got "
                     "':' (while parsing a flow sequence at line 2, column 17)")
    assert source.endswith("3 | models: []") and caret.strip() == "^"
    assert source[caret.index("^")] == ":"  # under the column named, whatever the prefix


def test_a_syntax_error_on_a_very_long_line_shows_the_part_around_its_column(capsys, tmp_path):
    (tmp_path / "long.yaml").write_text("name: long\nmatrix: {" + "quant: [bf16], " * 40 + "tp: [1]: x}\n")
    assert main(["list", "--suite", "long", "--suites-dir", str(tmp_path)]) == 2
    _, source, caret = capsys.readouterr().err.splitlines()
    assert len(source) < 120 and source[caret.index("^")] == ":"


def test_validate_shows_a_yaml_syntax_errors_caret_too(capsys, tmp_path):
    (tmp_path / "suites").mkdir()
    (tmp_path / "baselines").mkdir()
    (tmp_path / "suites" / "broken.yaml").write_text("name: [unclosed\n")
    assert main(["validate", "--suites-dir", str(tmp_path / "suites"),
                 "--baselines-dir", str(tmp_path / "baselines")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"harness: error: .*broken\.yaml:2:1: not valid YAML: .*", err[0]) and err[2].strip() == "^"


def test_every_suite_flag_says_what_it_takes(capsys):
    from harness.cli import build_parser

    flags = [action for parser in _parsers(build_parser()) for action in parser._actions
             if "--suite" in action.option_strings]
    assert len(flags) >= 5 and all(action.help for action in flags)
