"""The history API: every run under some roots, schema-checked, as points and a DataFrame; its readers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.baselines import BaselineEntry, Baselines
from harness.cli import main
from harness.commands.fixes import latest_verdicts
from harness.errors import ConfigError
from harness.history import RECORD_COLUMNS, History, past_durations, read_cells, run_dirs
from tests.builders import PROVENANCE, accuracy_entry, memory_entry, outcomes
from tests.history_runs import CELL, night_result, write_run

BASELINES = Baselines("glm5", Path("glm5.yaml"), {CELL: {
    "gsm8k.accuracy": accuracy_entry(outcomes(188, 200)),
    "memory.weights_gib": memory_entry(40.0),
    "spec.accept_length": BaselineEntry("spec.accept_length", PROVENANCE, value=2.7),
}})


def nights(root: Path, accept: list[float]) -> list[Path]:
    """One run a night; accept length per night, GSM8K 188/200, weights 40 GiB; engine build per night."""
    return [write_run(root, f"night-{day:02d}", [night_result(188, accept=value, day=day, version=f"0.5.{day}",
                                                              commit=f"c{day:03d}")],
                      day=day, baselines=BASELINES) for day, value in enumerate(accept, 1)]


def test_every_run_under_nested_roots_is_read_once_oldest_first(tmp_path):
    local, artifacts = tmp_path / "reports", tmp_path / "artifacts"
    nights(local, [2.7, 2.7])
    write_run(artifacts / "reports-glm5-0" / "reports", "night-03", [night_result(188, day=3)], day=3,
              baselines=BASELINES)
    write_run(artifacts / "copy", "night-02", [night_result(188, day=2)], day=2)  # the same run twice: once
    killed = write_run(local, "night-04", [night_result(150, day=4)], day=4, conclude=False)
    (local / "stray").mkdir()  # not a run
    history = History.load([local, artifacts])
    assert [r.run_id for r in history.runs] == ["night-01", "night-02", "night-03", "night-04"]
    assert history.runs[3].path == killed and history.runs[3].result is None
    points = [p for p in history.points if p.metric == "gsm8k.accuracy"]
    assert [(p.run_id, p.value, p.n, p.verdict) for p in points] == [
        ("night-01", 0.94, 200, "PASS"), ("night-02", 0.94, 200, "PASS"), ("night-03", 0.94, 200, "PASS"),
        ("night-04", 0.75, 200, None)]  # the killed run measured, never concluded: no verdict
    first = points[0]
    assert (first.engine, first.engine_version, first.engine_commit) == ("sglang", "0.5.1", "c001")
    assert first.hardware == "8x AMD Instinct MI300X" and first.date == "2026-11-01T02:00:00Z"
    assert first.stderr is None and first.baseline == 0.94 and first.reason.startswith("within noise")


def test_the_frame_is_cell_by_metric_by_run(tmp_path):
    import pandas

    nights(tmp_path, [2.7, 2.6, 2.2])
    frame = History.load([tmp_path]).frame()
    assert list(frame.columns) == list(RECORD_COLUMNS)
    assert len(frame) == 9  # 3 runs x (accuracy, memory, accept length)
    accept = frame[frame.metric == "spec.accept_length"].set_index("run")["value"]
    assert accept.to_dict() == {"night-01": 2.7, "night-02": 2.6, "night-03": 2.2}
    # pandas 3 stores microseconds, pandas 2 nanoseconds: the test asks for UTC datetimes, not a unit
    assert isinstance(frame["date"].dtype, pandas.DatetimeTZDtype) and str(frame["date"].dtype.tz) == "UTC"
    assert str(frame["n"].dtype) == "Int64"
    wide = frame.pivot_table(index="run", columns="metric", values="value")
    assert wide.loc["night-03", "memory.weights_gib"] == 40.0
    assert frame[frame.run == "night-03"].set_index("metric").loc["spec.accept_length", "verdict"] == "REGRESSED"


def test_broken_and_foreign_files_are_skipped_when_reading_many_and_refused_when_named(tmp_path):
    nights(tmp_path, [2.7])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.json").write_text(json.dumps({"kind": "something.else", "schema_version": 1}))
    history = History.load([tmp_path])
    assert [r.run_id for r in history.runs if r.result is not None] == ["night-01"]
    assert "not valid JSON" in next(r for r in history.records if r.path == broken).problem
    cell_file = next((tmp_path / "night-01" / "cells").glob("*/result.json"))
    cell_file.write_text('{"kind": "harness.cell_result", "schema_version": 1}')
    assert read_cells(tmp_path / "night-01", strict=False) == {}
    with pytest.raises(ConfigError, match="malformed cell result: missing key 'status'"):
        read_cells(tmp_path / "night-01")
    with pytest.raises(ConfigError, match="no such directory of runs"):
        History.load([tmp_path / "nope"], must_exist=True)
    assert History.load([tmp_path / "nope"]).runs == []


def test_a_merged_run_stands_for_its_shards(tmp_path):
    other = "glm5/quark-mxfp4/none/tp8"
    s1 = write_run(tmp_path, "s1", [night_result(188)], shard="1/2")
    s2 = write_run(tmp_path, "s2", [night_result(190, cell_id=other)], shard="2/2")
    write_run(tmp_path, "merged", [night_result(188), night_result(190, cell_id=other)],
              machine={"shards": [{"run": str(s1), "shard": "1/2"}, {"run": str(s2), "shard": "2/2"}]})
    history = History.load([tmp_path])
    assert [r.run_id for r in history.records] == ["merged", "s1", "s2"]
    assert [r.run_id for r in history.runs] == ["merged"]
    assert {p.run_id for p in history.points} == {"merged"}


def test_a_suite_gated_against_another_suites_baselines_joins_its_series(tmp_path):
    suites = Path(__file__).parent.parent / "suites"
    cell = "tiny-qwen3/quark-mxfp4/none/tp1"
    write_run(tmp_path, "healthy", [night_result(190, cell_id=cell, suite="local")], suite="local", day=1)
    write_run(tmp_path, "defect", [night_result(90, cell_id=cell, suite="local-defects", day=2)],
              suite="local-defects", day=2)
    series = History.load([tmp_path], suites_dir=suites).series()
    points = series["local", cell, "gsm8k.accuracy"]
    assert [(p.run_id, p.run_suite, p.value) for p in points] == [("healthy", "local", 0.95),
                                                                   ("defect", "local-defects", 0.45)]
    assert ("local-defects", cell, "gsm8k.accuracy") in History.load([tmp_path]).series()  # no suites: its own


def test_past_durations_newest_measured_run_per_cell(tmp_path):
    write_run(tmp_path, "a", [night_result(188, day=1)], day=1)
    write_run(tmp_path, "b", [night_result(188, day=5)], day=5, conclude=False)  # killed after the cell: counts
    write_run(tmp_path, "c", [night_result(188, day=3)], day=3)
    write_run(tmp_path, "other", [night_result(188, day=9, suite="kimi")], suite="kimi", day=9)
    assert past_durations([tmp_path], "glm5") == {CELL: 105.0}
    assert past_durations([tmp_path], "kimi") == {CELL: 109.0}
    assert past_durations([tmp_path / "nope"], "glm5") == {}


def test_latest_verdicts_are_the_newest_concluded_runs_worst(tmp_path):
    nights(tmp_path, [2.7, 2.2])
    assert latest_verdicts([tmp_path])[f"glm5:{CELL}"] == {
        "state": "REGRESSED", "run": "night-02",
        "figures": "gsm8k.accuracy 0.94, memory.weights_gib 40, spec.accept_length 2.2"}


def test_run_dirs_finds_runs_and_stops_inside_them(tmp_path):
    run = write_run(tmp_path / "x" / "y", "r", [night_result(188)])
    (run / "cells" / "nested" / "plan.json").parent.mkdir(parents=True)
    assert run_dirs([tmp_path]) == [run] and run_dirs([run]) == [run]


def test_history_command_prints_series_and_steps(tmp_path, capsys):
    nights(tmp_path, [2.7, 2.71, 2.69, 2.7, 2.3, 2.32, 2.29])
    assert main(["history", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("7 run(s), night-01 .. night-07; 3 series")
    assert f"glm5   {CELL}  spec.accept_length" in out
    assert (f"glm5 {CELL} spec.accept_length: REGRESSED from run night-05 (2026-11-05T02:00:00Z; "
            f"sglang 0.5.5 @ c005): 2.7 -> 2.303") in out
    assert main(["history", str(tmp_path), "--metric", "memory.*", "--runs"]) == 0
    out = capsys.readouterr().out
    assert "spec.accept_length" not in out and "steps (" not in out
    assert "  night-07  2026-11-07T02:00:00Z  40.00 GiB  n=-  pass  sglang 0.5.7 @ c007" in out
    assert main(["history", str(tmp_path), "--format", "csv", "--metric", "spec.*"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == ",".join([*RECORD_COLUMNS, "step"]) and len(rows) == 8
    assert rows[5].startswith(f"glm5,{CELL},spec.accept_length,night-05,") and rows[5].endswith(",REGRESSED")
    assert main(["history", "--reports-dir", str(tmp_path), "--format", "json", "--cell", "nope/*"]) == 0
    assert json.loads(capsys.readouterr().out)["series"] == []
    assert main(["history", str(tmp_path / "nope")]) == 2
    assert "nope: no such directory of runs" in capsys.readouterr().err
    assert main(["history", str(tmp_path), "--window", "0"]) == 2


def test_the_cli_start_up_path_imports_no_pandas():
    code = ("import sys; from harness.cli import main; main(['list', '--suite', 'glm5']); "
            "assert 'pandas' not in sys.modules and 'harness.history' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
