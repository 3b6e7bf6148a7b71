"""The architecture the README's layout section documents, checked: a new eval is one module plus one
registration line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fake_cells import FAKE_ENGINES

ROOT = Path(__file__).resolve().parent.parent

# A whole eval, as a contributor would write it: protocol, data (generated), prompts, scorer, metric.
SUMS_EVAL = '''"""Sums: "What is a plus b?", answered after '####'."""

from __future__ import annotations

from typing import Any

from harness.evals.base import ProtocolDefaults
from harness.evals.runner import Dataset, Prepared, question_eval, question_protocol, sampling
from harness.metric_kinds import MetricDef, MetricKind

PROTOCOLS = {"plain": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="completion", max_tokens=16)}
DATASET = Dataset("sums-v1", "0" * 64, 500)


def prepare(config, model: str, **_: Any) -> Prepared:
    from harness.transport import Request

    pairs = {f"sum-{i:03d}": (i, 2 * i + 1) for i in range(config.questions)}
    requests = [Request(qid, "/v1/completions", {**sampling(config, model), "prompt": f"What is {a} plus {b}?"})
                for qid, (a, b) in pairs.items()]

    def scorer(qid: str, text: str):
        found = text.rsplit("####", 1)[1].strip() if "####" in text else None
        return found, found == str(sum(pairs[qid])), {}

    protocol = question_protocol(config, PROTOCOLS[config.protocol], DATASET, None)
    return Prepared(iter(requests), len(requests), scorer, None, protocol)


EVAL = question_eval(name="sums", protocols=PROTOCOLS, default_protocol="plain", dataset=DATASET,
                     metrics=(MetricDef("sums.accuracy", MetricKind.ACCURACY, "sums right", min_effect=0.05),),
                     prepare=prepare)
'''


def _harness_with_sums(tmp_path: Path) -> Path:
    """A copy of the package with the new eval's module and its registration line, and nothing else."""
    package = tmp_path / "pkg" / "harness"
    shutil.copytree(ROOT / "harness", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "evals" / "sums.py").write_text(SUMS_EVAL)
    registry = package / "evals" / "registry.py"
    text = registry.read_text()
    line = 'REGISTERED = ("gsm8k", "gpqa", "numerics")'
    assert text.count(line) == 1
    registry.write_text(text.replace(line, 'REGISTERED = ("gsm8k", "gpqa", "numerics", "sums")'))
    return package.parent


def test_a_new_eval_is_one_module_and_one_registration_line(tmp_path):
    pkg = _harness_with_sums(tmp_path)
    suites, baselines, reports = tmp_path / "suites", tmp_path / "baselines", tmp_path / "reports"
    suites.mkdir()
    (suites / "sums.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "name": "sums", "engine": "sglang", "hardware": {"vendor": "amd", "gpus": 1},
        "timeouts": {"launch_s": 30, "eval_s": 60, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES), "FAKE_SGLANG_LOAD_S": "0"}},
        "evals": {"sums": {"protocol": "plain", "questions": 40, "concurrency": 8}},
        "matrix": {"quant": ["bf16"], "spec": ["none"], "tp": [1]},
        "models": [{"id": "toy", "checkpoints": {"bf16": "toy/model"}}],
    }))
    env = {**os.environ, "PYTHONPATH": str(pkg), "HARNESS_GPU_BACKEND": "none"}
    dirs = ["--suites-dir", str(suites), "--baselines-dir", str(baselines)]

    def harness(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    listed = harness("list", "--suite", "sums", "--suites-dir", str(suites))
    assert listed.returncode == 0 and "toy/bf16/none/tp1  sums:plain/0-shot/40q" in listed.stdout, listed.stderr
    assert "sums" in harness("eval", "--help").stdout  # the CLI's choices come from the registry
    first = harness("run", "--suite", "sums", "--run-id", "first", "--no-preflight", *dirs,
                    "--reports-dir", str(reports))
    assert first.returncode == 0, first.stderr
    cell = json.loads((reports / "first" / "results.json").read_text())["cells"][0]
    assert cell["evals"]["sums"]["metrics"]["accuracy"]["value"] == 1.0
    assert cell["evals"]["sums"]["protocol"]["dataset"] == "sums-v1"
    baselines.mkdir()
    promoted = harness("baseline", "update", "--from", str(reports / "first"), "--baselines-dir", str(baselines))
    assert promoted.returncode == 0 and "sums.accuracy: none -> 1" in promoted.stdout, promoted.stderr
    assert harness("validate", *dirs).returncode == 0
    second = harness("run", "--suite", "sums", "--run-id", "second", "--no-preflight", *dirs,
                     "--reports-dir", str(reports))
    assert second.returncode == 0, second.stderr
    verdicts = json.loads((reports / "second" / "results.json").read_text())["verdicts"]
    (sums,) = [v for v in verdicts if v["metric"] == "sums.accuracy"]
    assert sums["state"] == "PASS" and sums["test"] == "mcnemar-exact"  # gated like any accuracy
