"""`harness run` and `harness memory` as a user runs them: real processes, reports on disk, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from tests.fake_cells import recorded_pids
from tests.helpers import assert_nothing_survives, dirs, fake_suite

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def test_run_writes_reports_and_gates_memory(tmp_path, capsys):
    root = fake_suite(tmp_path, {"none": "ok", "mtp": "oom"})
    code = main(["run", "--suite", "fake", "--run-id", "r1", *dirs(root)])
    out, err = capsys.readouterr()
    assert code == 3, out  # the mtp cell hit an OOM: infrastructure, not a regression
    # Progress says what happened to each cell, never "ok" (the verdicts come in the table at the end).
    assert re.search(r"\] fake/quark-mxfp4/none/tp1: measured in \d+\.\d s$", err, re.M), err
    assert re.search(r"\] fake/quark-mxfp4/mtp/tp1: failed \(oom_load\) in \d+\.\d s$", err, re.M), err
    run_dir = root / "reports" / "r1"
    results = json.loads((run_dir / "results.json").read_text())
    states = {(v["cell_id"], v["metric"]): v["state"] for v in results["verdicts"]}
    assert states[("fake/quark-mxfp4/none/tp1", "memory.weights_gib")] == "PASS"
    assert states[("fake/quark-mxfp4/mtp/tp1", "cell")] == "INFRA_ERROR"
    assert (run_dir / "cells" / "fake__quark-mxfp4__mtp__tp1" / "server.log").exists()
    assert (run_dir / "cells" / "fake__quark-mxfp4__none__tp1" / "result.json").exists()
    summary = (run_dir / "summary.md").read_text()
    assert "oom_load" in summary and "HIP out of memory" in summary
    assert results["machine"]["cpu_count"] and results["cells"][0]["engine"]["version"] == "0.0.0-fake"
    assert_nothing_survives(tmp_path)
    # Results already measured are never overwritten.
    assert main(["run", "--suite", "fake", "--run-id", "r1", *dirs(root)]) == 2
    assert "a run with this id exists already" in capsys.readouterr().err


def test_sigint_saves_what_was_measured_and_exits_130(tmp_path):
    root = fake_suite(tmp_path, {"none": "ok", "mtp": "hang_before_ready"}, launch_s=120)
    # PYTHONFAULTHANDLER: if the harness ever hangs here, SIGABRT below makes it print every thread's stack.
    # The child gets SIGINT's default disposition: a CI job started in the background by a non-interactive
    # shell ignores SIGINT, Python keeps an inherited SIG_IGN, and Ctrl-C would then never reach harness.
    # --max-parallel 1: the first cell finishes before the second starts (packed, both would be interrupted).
    process = subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", "fake", "--run-id", "r2",
                                "--max-parallel", "1", *dirs(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    log = root / "reports" / "r2" / "cells" / "fake__quark-mxfp4__mtp__tp1" / "server.log"
    while time.monotonic() < deadline and not (log.exists() and "Capture target decode" in log.read_text()):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate(timeout=30)
        pytest.fail(f"harness did not exit within 60 s of SIGINT; its threads:\n{err}")
    assert process.returncode == 130, err
    results = json.loads((root / "reports" / "r2" / "results.json").read_text())
    causes = {c["cell_id"]: c["error"]["cause"] if c["error"] else None for c in results["cells"]}
    assert causes == {"fake/quark-mxfp4/none/tp1": None, "fake/quark-mxfp4/mtp/tp1": "interrupted"}
    assert len(recorded_pids(tmp_path)) == 6  # two cells: server, scheduler, detokenizer each
    assert_nothing_survives(tmp_path)
    assert "harness run --resume" in err

    # Resume: the finished cell is kept as it was, the interrupted one runs again (now healthy), and its
    # interrupted attempt stays on disk beside the new result.
    run_dir = root / "reports" / "r2"
    finished_cell = run_dir / "cells" / "fake__quark-mxfp4__none__tp1" / "result.json"
    before = finished_cell.read_text()
    suite_file = root / "suites" / "fake.yaml"
    suite_file.write_text(suite_file.read_text().replace("hang_before_ready", "ok"))
    assert main(["run", "--resume", str(run_dir), *dirs(root)]) == 0
    assert finished_cell.read_text() == before
    cell_dir = run_dir / "cells" / "fake__quark-mxfp4__mtp__tp1"
    assert json.loads((cell_dir / "result.json").read_text())["error"] is None
    assert json.loads((cell_dir / "result.attempt-1.json").read_text())["error"]["cause"] == "interrupted"
    assert (cell_dir / "server.attempt-1.log").exists()
    results = json.loads((run_dir / "results.json").read_text())
    assert [c["cell_id"] for c in results["cells"]] == ["fake/quark-mxfp4/none/tp1", "fake/quark-mxfp4/mtp/tp1"]
    assert_nothing_survives(tmp_path)


def test_memory_command_on_a_tp8_log(capsys):
    assert main(["memory", str(FIXTURES / "sglang_tp8_ep8_mla_mtp.log")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["rank", "weights", "draft"]
    assert lines[1].startswith("TP0 EP0") and lines[8].startswith("TP7 EP7")
    assert "GiB, max over ranks: weights_gib 46.370, kv_cache_gib 69.180, graph_gib 0.780" in out
    assert main(["memory", str(FIXTURES / "vllm_tp2.log"), "--engine", "vllm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max"]["weights_gib"] == 15.012


def test_memory_command_reports_missing_and_unreadable(capsys, tmp_path):
    assert main(["memory", str(FIXTURES / "sglang_oom_load.log")]) == 0
    assert "missing: TP0: no 'Load weight end' line" in capsys.readouterr().out
    assert main(["memory", str(tmp_path / "nope.log")]) == 2
    assert "nope.log: cannot read" in capsys.readouterr().err


def test_run_preflights_every_cell_and_never_launches_a_failing_one(tmp_path, capsys):
    from tests import checkpoints

    bf16 = checkpoints.qwen3(tmp_path / "qwen3-8b")  # Qwen3-8B's shapes: 15.26 GiB of BF16 weights
    prequantized = checkpoints.qwen3(tmp_path / "qwen3-8b-mxfp4", mxfp4=True)
    root = fake_suite(tmp_path, {"none": "ok"})
    suite = yaml.safe_load((root / "suites" / "fake.yaml").read_text())
    suite["matrix"]["quant"] = ["bf16", "quark_mxfp4"]
    suite["models"] = [
        {"id": "good", "fix": "online-mxfp4", "checkpoints": {"bf16": str(bf16)}, "matrix": {"quant": ["bf16"]}},
        # Online quantization of a checkpoint that is MXFP4 already: SGLang would fail after the launch.
        {"id": "bad", "fix": "online-mxfp4", "checkpoints": {"quark_mxfp4": str(prequantized)},
         "matrix": {"quant": ["quark_mxfp4"]}},
    ]
    (root / "suites" / "fake.yaml").write_text(yaml.safe_dump(suite))
    (root / "baselines" / "fake.yaml").unlink()  # its cell is not in this suite any more (an error: scenario 13)
    code = main(["run", "--suite", "fake", "--run-id", "pf", *dirs(root)])
    captured = capsys.readouterr()
    assert code == 2, captured.out  # a config failure, not a regression nor an infrastructure failure
    assert "preflight bad/quark_mxfp4/none/tp1: FAIL: preflight online-mxfp4 (#18005)" in captured.err
    run_dir = root / "reports" / "pf"
    results = json.loads((run_dir / "results.json").read_text())
    states = {(v["cell_id"], v["metric"]): (v["state"], v["reason"]) for v in results["verdicts"]}
    state, reason = states[("bad/quark_mxfp4/none/tp1", "cell")]
    assert state == "CONFIG_ERROR" and "the checkpoint is MXFP4 already" in reason
    assert not (run_dir / "cells" / "bad__quark_mxfp4__none__tp1" / "server.log").exists()  # never launched
    bad = json.loads((run_dir / "cells" / "bad__quark_mxfp4__none__tp1" / "result.json").read_text())
    assert bad["status"] == "config_error" and bad["error"]["cause"] == "preflight"
    good = json.loads((run_dir / "cells" / "good__bf16__none__tp1" / "result.json").read_text())
    assert good["status"] == "ok" and good["preflight"]["predicted_weights"]["bf16_gib"] == pytest.approx(15.256, abs=1e-3)
    # The test double reports 40 GiB of weights: far from the 15.26 GiB predicted, and reported as such.
    gap = good["preflight"]["memory_vs_prediction"]
    assert gap["metric"] == "memory.weights_gib" and gap["measured_gib"] == 40.0 and not gap["within_tolerance"]
    assert "measured memory.weights_gib 40.00 GiB, predicted weights 15.26 GiB" in (run_dir / "summary.md").read_text()
    assert_nothing_survives(tmp_path)
    # `harness fixes`: the fix, its rule, the cells that guard it, and their latest verdicts.
    assert main(["fixes", "--suites-dir", str(root / "suites"), "--reports-dir", str(root / "reports")]) == 0
    out = capsys.readouterr().out
    assert "online-mxfp4 (#18005): BF16 dense and MoE checkpoints" in out and "rules: online_mxfp4" in out
    assert "fake:bad/quark_mxfp4/none/tp1" in out and "CONFIG_ERROR  [pf]" in out
    assert "fake:good/bf16/none/tp1" in out and "NO_BASELINE  [pf]  memory.weights_gib 40" in out
    assert "glm5-mxfp4-mtp (#23219)" in out and "(no suite cell guards it)" in out
    assert "quark-fp8-shared-experts [guard] (deepseek_v2.py" in out and "rules: quark_fp8_shared_experts" in out
    assert main(["preflight", "--suite", "fake", "--cell", "bad/*", "--suites-dir", str(root / "suites"),
                 "--engine-version", "0.5.17"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("bad/quark_mxfp4/none/tp1") and "good/" not in out and "[SGLang 0.5.17 loader]" in out


def test_shards_plan_run_and_merge_into_one_gated_run(tmp_path, capsys):
    root = fake_suite(tmp_path, {"none": "ok", "mtp": "ok"})
    suite_file = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(suite_file.read_text())
    suite["matrix"]["tp"] = [1, 2]
    suite_file.write_text(yaml.safe_dump(suite))
    assert main(["plan", "--suite", "fake", "--shards", "2", "--format", "github", *dirs(root)]) == 0
    matrix = json.loads(capsys.readouterr().out)
    assert [job["shard"] for job in matrix["include"]] == ["1/2", "2/2"]
    assert sum(job["cells"] for job in matrix["include"]) == 4 and matrix["include"][0]["suite"] == "fake"
    for index in (1, 2):
        assert main(["run", "--suite", "fake", "--shard", f"{index}/2", "--run-id", f"s{index}", *dirs(root)]) == 0
    capsys.readouterr()
    shards = [root / "reports" / "s1", root / "reports" / "s2"]
    planned = [json.loads((s / "plan.json").read_text())["cells"] for s in shards]
    assert len(planned[0]) == len(planned[1]) == 2 and not set(planned[0]) & set(planned[1])
    assert main(["merge", *map(str, shards), "--run-id", "all", *dirs(root)]) == 0
    merged = json.loads((root / "reports" / "all" / "results.json").read_text())
    assert sorted(merged["planned"]) == sorted(planned[0] + planned[1])
    assert len(merged["cells"]) == 4 and len(merged["machine"]["shards"]) == 2
    states = {(v["cell_id"], v["metric"]): v["state"] for v in merged["verdicts"]}
    assert states[("fake/quark-mxfp4/none/tp1", "memory.weights_gib")] == "PASS"  # gated against the baseline
    assert (root / "reports" / "all" / "cells" / "fake__quark-mxfp4__mtp__tp2" / "server.log").exists()
    # Costs from past runs, when named: the four cells' real seconds, far below the default estimate.
    capsys.readouterr()
    assert main(["plan", "--suite", "fake", "--shards", "2", "--format", "json", "--durations-from",
                 str(root / "reports"), *dirs(root)]) == 0
    assert sum(shard["estimated_gpu_s"] for shard in json.loads(capsys.readouterr().out)) < 60
    # A cell in two shards has no single answer; and a merged run never overwrites another.
    assert main(["merge", str(shards[0]), str(shards[0]), "--run-id", "twice", *dirs(root)]) == 2
    assert "shards must not overlap" in capsys.readouterr().err
    assert main(["merge", *map(str, shards), "--run-id", "all", *dirs(root)]) == 2
    assert_nothing_survives(tmp_path)


def test_a_lost_shard_shows_its_cells_missing(tmp_path, capsys):
    root = fake_suite(tmp_path, {"none": "ok", "mtp": "ok"})
    assert main(["run", "--suite", "fake", "--shard", "1/2", "--run-id", "s1", *dirs(root)]) == 0
    # Shard 2's runner died after writing its plan and before any cell finished.
    other = root / "reports" / "s2"
    other.mkdir()
    first = json.loads((root / "reports" / "s1" / "plan.json").read_text())
    all_cells = ["fake/quark-mxfp4/none/tp1", "fake/quark-mxfp4/mtp/tp1"]
    (other / "plan.json").write_text(json.dumps({**first, "run_id": "s2", "shard": "2/2",
                                                 "cells": [c for c in all_cells if c not in first["cells"]]}))
    assert main(["merge", str(root / "reports" / "s1"), str(other), "--run-id", "m", *dirs(root)]) == 3
    capsys.readouterr()


def test_resume_and_merge_say_what_is_wrong_in_one_line(tmp_path, capsys):
    root = fake_suite(tmp_path, {"none": "ok"})
    (root / "reports" / "stray").mkdir(parents=True)
    assert main(["run", "--resume", str(root / "reports" / "stray"), *dirs(root)]) == 2
    assert "no plan.json" in capsys.readouterr().err
    assert main(["merge", str(root / "reports" / "stray"), *dirs(root)]) == 2
    assert "stray: no plan.json" in capsys.readouterr().err
    assert main(["run", "--suite", "fake", "--run-id", "r", *dirs(root)]) == 0
    assert main(["run", "--resume", str(root / "reports" / "r"), "--shard", "1/2", *dirs(root)]) == 2
    assert "--resume: the run directory's plan.json decides the cells" in capsys.readouterr().err
    # Everything finished: resuming runs nothing, keeps every result, and gates again.
    before = (root / "reports" / "r" / "cells" / "fake__quark-mxfp4__none__tp1" / "result.json").read_text()
    assert main(["run", "--resume", str(root / "reports" / "r"), *dirs(root)]) == 0
    assert "0 cells of suite fake (1 finished earlier, kept)" in capsys.readouterr().err
    assert (root / "reports" / "r" / "cells" / "fake__quark-mxfp4__none__tp1" / "result.json").read_text() == before
    assert main(["run", "--suite", "fake", "--shard", "3/2", *dirs(root)]) == 2
    assert "--shard '3/2': expected k/n" in capsys.readouterr().err


def test_bad_max_parallel_and_missing_data_stop_before_any_server_launches(tmp_path, capsys, monkeypatch):
    root = fake_suite(tmp_path, {"none": "ok", "mtp": "ok"})
    assert main(["run", "--suite", "fake", "--max-parallel", "0", *dirs(root)]) == 2  # was: a hang for ever
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--max-parallel 0: must be at least 1")
    suite_path = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(suite_path.read_text())
    suite["evals"] = {"gsm8k": {"protocol": "sglang-fewshot", "shots": 5, "questions": 10}}
    suite_path.write_text(yaml.safe_dump(suite))
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "no-data"))
    assert main(["run", "--suite", "fake", "--run-id", "r", *dirs(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("test.jsonl is missing; run `harness data fetch gsm8k`") == 1, err  # once, not per cell
    assert str(tmp_path / "no-data" / "gsm8k" / "test.jsonl") in err
    assert not (tmp_path / "pids").exists() and not (root / "reports" / "r").exists()  # nothing launched
