"""The real engine: `transformers serve` on the committed tiny model, through `harness run`."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from harness.cli import main
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None or
                                importlib.util.find_spec("fastapi") is None,
                                reason="transformers[serving] not installed")


def test_bf16_cell_on_a_real_server(tmp_path, capsys):
    suite = yaml.safe_load((ROOT / "suites" / "local.yaml").read_text())
    suite["matrix"]["quant"] = ["bf16"]
    suite["evals"]["gsm8k"]["questions"] = 100
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "local.yaml").write_text(yaml.safe_dump(suite))
    code = main(["run", "--suite", "local", "--run-id", "e2e", "--suites-dir", str(tmp_path / "suites"),
                 "--baselines-dir", str(tmp_path / "baselines"), "--reports-dir", str(tmp_path / "reports")])
    results = json.loads((tmp_path / "reports" / "e2e" / "results.json").read_text())
    (cell,) = results["cells"]
    assert code == 0 and cell["status"] == "ok", cell.get("error")
    gsm8k = cell["evals"]["gsm8k"]
    assert gsm8k["protocol"]["dataset"] == "synthetic-arith-v1" and gsm8k["protocol"]["dataset_sha256"]
    assert gsm8k["metrics"]["accuracy"]["n"] == 100 and gsm8k["request_errors"] == 0
    assert gsm8k["metrics"]["accuracy"]["value"] >= 0.90  # the bar for the BF16 model
    assert cell["engine"]["name"] == "transformers" and cell["engine"]["version"]
    assert cell["memory"]["host_rss_peak_gib"] > 0 and cell["memory_report"]["sampler"] == "process-tree-rss"
    assert "device_peak_gib" not in cell["memory"]  # RSS is not a GPU figure and must not be gated as one
    log = (tmp_path / "reports" / "e2e" / "cells" / "tiny-qwen3__bf16__none__tp1" / "server.log").read_text()
    assert "transformers.cli.transformers serve" in log and "Application startup complete." in log
