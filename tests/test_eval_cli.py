"""`harness eval`, `harness data fetch`, and a whole `harness run` with GSM8K against the SGLang double."""

from __future__ import annotations

import json

import pytest
import yaml

from harness.cli import main
from harness.evals import gpqa, gsm8k
from tests.fake_cells import FAKE_ENGINES


@pytest.mark.gsm8k
def test_eval_against_a_running_server_prints_the_result_schema(stub_server, capsys):
    url = stub_server("--wrong-every", "5", "--eos-token", "<|endoftext|>")
    assert main(["eval", "gsm8k", "--base-url", url, "--questions", "50", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["name"] == "gsm8k" and body["metrics"]["accuracy"]["value"] == 0.8
    assert body["protocol"]["protocol"] == "sglang-fewshot" and body["protocol"]["shots"] == 5
    assert body["outcomes"][0] == {"id": "gsm8k-test-0000", "correct": False, "extracted": "181"}
    assert main(["eval", "gsm8k", "--base-url", url, "--questions", "20", "--protocol", "lm-eval"]) == 0
    assert "gsm8k (lm-eval): accuracy 0.8000" in capsys.readouterr().out
    assert main(["eval", "gsm8k", "--base-url", url, "--questions", "5", "--protocol", "lm-eval", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"]["eos_string"] == "<|endoftext|>"  # the server's


@pytest.mark.gsm8k
def test_lm_eval_without_an_eos_string_is_a_config_error_naming_the_key(stub_server, capsys):
    url = stub_server()
    assert main(["eval", "gsm8k", "--base-url", url, "--questions", "5", "--protocol", "lm-eval"]) == 2
    assert "set `eos_string:`" in capsys.readouterr().err
    assert main(["eval", "gsm8k", "--base-url", url, "--questions", "5", "--protocol", "lm-eval",
                 "--eos-string", "</s>", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"]["eos_string"] == "</s>"


def test_eval_flag_errors_name_the_flag(capsys):
    assert main(["eval", "gsm8k", "--base-url", "http://127.0.0.1:9", "--protocol", "lm_eval"]) == 2
    assert "command line: protocol: unknown gsm8k protocol 'lm_eval'; did you mean 'lm-eval'?" in \
        capsys.readouterr().err
    assert main(["eval", "gsm8k", "--base-url", "http://127.0.0.1:9", "--chat-template-kwargs", "{oops"]) == 2
    assert "--chat-template-kwargs: not JSON" in capsys.readouterr().err


def test_an_eval_that_runs_only_in_a_suite_or_has_no_data_is_refused_in_one_line(capsys):
    """The parser offers every registered name (known without importing an eval); what `harness eval` cannot
    run, or `harness data fetch` cannot fetch, is refused when run: exit 2, one line naming what it can."""
    assert main(["eval", "numerics", "--base-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "numerics: runs only inside a suite's cell; harness eval runs gsm8k, gpqa, aime" in err
    assert main(["data", "fetch", "aime"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aime: no data to fetch (harness data fetch takes gsm8k, gpqa)" in err


@pytest.mark.gsm8k
def test_eval_against_nothing_is_an_infra_error(capsys):
    code = main(["eval", "gsm8k", "--base-url", "http://127.0.0.1:9", "--questions", "10", "--model", "m"])
    assert code == 3 and "10 of 10 requests failed" in capsys.readouterr().err


def test_offline_fetch_is_one_line_saying_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(gsm8k, "GSM8K_BASE_URL", "http://127.0.0.1:9/")
    assert main(["data", "fetch", "gsm8k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot download http://127.0.0.1:9/test.jsonl" in err and "offline?" in err
    monkeypatch.setattr(gpqa, "GPQA_CSV_URL", "http://127.0.0.1:9/gpqa_diamond.csv")
    assert main(["data", "fetch", "gpqa"]) == 2


@pytest.mark.gsm8k
def test_fetch_with_a_cache_already_in_place_verifies_it(capsys):
    assert main(["data", "fetch", "gsm8k"]) == 0  # HARNESS_DATA_DIR holds GSM8K here (tests/conftest.py)
    assert "test.jsonl  sha256 3730d312f6e3" in capsys.readouterr().out


@pytest.mark.gsm8k
def test_run_with_gsm8k_gates_accuracy_against_a_baseline(tmp_path, capsys):
    suites, baselines = tmp_path / "suites", tmp_path / "baselines"
    suites.mkdir()
    baselines.mkdir()
    (suites / "fake.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "name": "fake", "engine": "sglang", "hardware": {"vendor": "amd", "gpus": 1},
        "timeouts": {"launch_s": 30, "eval_s": 60, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES)}},
        "evals": {"gsm8k": {"protocol": "sglang-fewshot", "shots": 5, "questions": 40, "concurrency": 8}},
        "matrix": {"quant": ["quark-mxfp4"], "spec": ["none"], "tp": [1]},
        "models": [{"id": "fake", "fix": "glm5-mxfp4-mtp", "checkpoints": {"quark-mxfp4": "fake/model"}}],
    }))
    (baselines / "fake.yaml").write_text(yaml.safe_dump({
        "kind": "harness.baselines", "schema_version": 1, "suite": "fake",
        "cells": {"fake/quark-mxfp4/none/tp1": {"gsm8k.accuracy": {
            "value": 0.70, "n": 40, "protocol": {"eval": "gsm8k", "protocol": "sglang-fewshot", "shots": 5},
            "provenance": {"source": "harness", "date": "2026-11-22"}}}},
    }))
    argv = ["run", "--suite", "fake", "--run-id", "r", "--suites-dir", str(suites), "--baselines-dir",
            str(baselines), "--reports-dir", str(tmp_path / "reports")]
    assert main(argv) == 0  # the double answers every question right: 1.0 vs 0.70 on 40
    results = json.loads((tmp_path / "reports" / "r" / "results.json").read_text())
    (verdict,) = [v for v in results["verdicts"] if v["metric"] == "gsm8k.accuracy"]
    assert verdict["value"] == 1.0 and verdict["state"] == "IMPROVED" and verdict["test"] == "fisher-exact"
    gsm = results["cells"][0]["evals"]["gsm8k"]
    assert len(gsm["outcomes"]) == 40 and gsm["protocol"]["dataset_sha256"].startswith("3730d312")
    assert "Janet" not in (tmp_path / "reports" / "r" / "results.json").read_text()


@pytest.mark.gsm8k
def test_one_degenerate_completion_never_ends_an_eval(tmp_path, stub_server, capsys):
    """A 5,000-digit run is SGLang's SyntaxError, caught: that question scores invalid, the eval goes on."""
    rows = gsm8k.read_gsm8k("test")[:10]
    replies = {row["question"] + "\nAnswer:": " The total is " + "7" * 5000 + "." if i == 3 else " " + row["answer"]
               for i, row in enumerate(rows)}
    (tmp_path / "replies.json").write_text(json.dumps(replies))
    url = stub_server("--replies", str(tmp_path / "replies.json"))
    assert main(["eval", "gsm8k", "--base-url", url, "--questions", "10", "--shots", "0", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["outcomes"][3] == {"id": "gsm8k-test-0003", "correct": False, "extracted": None}
    assert body["metrics"]["accuracy"]["value"] == 0.9 and body["metrics"]["invalid_rate"]["value"] == 0.1
