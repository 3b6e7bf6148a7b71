"""The lm-eval backend: the same eval through lm_eval.simple_evaluate, agreeing with harness's own."""

from __future__ import annotations

import importlib.util
import json

import pytest

from harness.evals.runner import run_eval
from harness.protocols import EvalConfig

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval not installed")


def test_same_prompts_same_requests_same_outcomes(tmp_path, stub_server):
    from harness.evals.lmeval_backend import run_lm_eval

    config = EvalConfig(name="gsm8k", protocol="lm-eval", shots=5, questions=30, max_tokens=256, temperature=0.0,
                        repeats=1, concurrency=8)
    results, logs = {}, {}
    for name, run in (("harness", run_eval), ("lm-eval", run_lm_eval)):
        log = tmp_path / f"{name}.jsonl"
        url = stub_server("--wrong-every", "7", "--log-prompts", str(log))
        results[name] = run(config, url, model="stub-model")
        logs[name] = {json.loads(line)["index"]: json.loads(line) for line in log.read_text().splitlines()}
    assert sorted(logs["harness"]) == sorted(logs["lm-eval"]) == list(range(30))
    for index in range(30):
        assert logs["harness"][index]["prompt"] == logs["lm-eval"][index]["prompt"]
        assert logs["harness"][index]["body"] == logs["lm-eval"][index]["body"]
    ours, theirs = results["harness"], results["lm-eval"]
    assert [(o.id, o.correct) for o in ours.outcomes] == [(o.id, o.correct) for o in theirs.outcomes]
    assert ours.metrics["accuracy"] == theirs.metrics["accuracy"]
    assert ours.metrics["accuracy_flexible"] == theirs.metrics["accuracy_flexible"]
    assert theirs.protocol["runner"] == "lm-eval"
