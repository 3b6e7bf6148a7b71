"""The lm-eval backend: the same eval through lm_eval.simple_evaluate, agreeing with harness's own."""

from __future__ import annotations

import importlib.util
import json

import pytest

from harness.evals.base import EvalConfig
from harness.evals.registry import run_eval

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval not installed")


@pytest.mark.gsm8k
def test_same_prompts_same_requests_same_outcomes(tmp_path, stub_server):
    from harness.evals.lmeval_backend import run_lm_eval

    config = EvalConfig(name="gsm8k", protocol="lm-eval", shots=5, questions=30, max_tokens=256, temperature=0.0,
                        repeats=1, concurrency=8)
    results, logs = {}, {}
    for name, run in (("harness", run_eval), ("lm-eval", run_lm_eval)):
        log = tmp_path / f"{name}.jsonl"
        url = stub_server("--wrong-every", "7", "--log-prompts", str(log), "--eos-token", "<|endoftext|>")
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
    # local-completions appends the tokenizer's EOS string to the stop list; harness's protocol does too.
    assert logs["lm-eval"][0]["body"]["stop"] == ["Question:", "</s>", "<|im_end|>", "<|endoftext|>"]
    assert ours.protocol["eos_string"] == theirs.protocol["eos_string"] == "<|endoftext|>"


def _logged(path):
    return {json.loads(line)["index"]: json.loads(line) for line in path.read_text().splitlines()}


@pytest.mark.gsm8k
@pytest.mark.parametrize("protocol", ["chat", "sglang-fewshot"])
def test_harness_protocols_through_lm_eval_send_the_same_prompts(tmp_path, stub_server, protocol):
    from harness.evals.lmeval_backend import run_lm_eval

    config = EvalConfig(name="gsm8k", protocol=protocol, shots=0 if protocol == "chat" else 5, questions=20,
                        max_tokens=128, temperature=0.0, repeats=1, concurrency=4,
                        chat_template_kwargs={"thinking": True} if protocol == "chat" else {})
    results, logs = {}, {}
    for name, run in (("harness", run_eval), ("lm-eval", run_lm_eval)):
        log = tmp_path / f"{name}.jsonl"
        flags = ("--wrong-every", "6", "--log-prompts", str(log)) + (("--reasoning",) if protocol == "chat" else ())
        results[name] = run(config, stub_server(*flags), model="stub-model")
        logs[name] = _logged(log)
    assert sorted(logs["harness"]) == sorted(logs["lm-eval"]) == list(range(20))
    for index in range(20):
        ours, theirs = logs["harness"][index], logs["lm-eval"][index]
        assert ours["prompt"] == theirs["prompt"]
        # lm-eval always sends a seed, and `stop: []` on chat: neither changes a greedy answer.
        extra = {key: theirs["body"][key] for key in theirs["body"].keys() - ours["body"].keys()}
        assert extra == ({"seed": 1234, "stop": []} if protocol == "chat" else {"seed": 1234})
        assert {key: theirs["body"][key] for key in ours["body"]} == ours["body"]
    assert [(o.id, o.correct, o.extracted) for o in results["harness"].outcomes] == \
        [(o.id, o.correct, o.extracted) for o in results["lm-eval"].outcomes]
    assert results["lm-eval"].metrics["accuracy"] == results["harness"].metrics["accuracy"] != 1.0
    assert results["lm-eval"].protocol == {**results["harness"].protocol, "runner": "lm-eval"}


def test_gpqa_through_lm_eval_agrees_and_leaks_nothing(tmp_path, stub_server, capsys, caplog):
    from harness.evals.lmeval_backend import run_lm_eval
    from harness.results import CellResult, cell_result_to_dict
    from tests.test_gpqa import synthetic_csv

    path = synthetic_csv(tmp_path / "g.csv")
    config = EvalConfig(name="gpqa", protocol="simple-evals", shots=0, questions=198, max_tokens=64,
                        temperature=0.0, repeats=2, data=str(path), concurrency=4)
    url = stub_server()
    ours, theirs = run_eval(config, url, model="stub"), run_lm_eval(config, url, model="stub")
    assert [(o.id, o.correct, o.extracted) for o in ours.outcomes] == \
        [(o.id, o.correct, o.extracted) for o in theirs.outcomes]
    assert theirs.metrics["accuracy"].value == 1.0 and theirs.metrics["accuracy"].n == 24
    dumped = json.dumps(cell_result_to_dict(CellResult("c", "s", "ok", {}, evals={"gpqa": theirs})))
    assert "SECRET-QUESTION-TEXT" not in dumped and "CORRECT choice" not in dumped
    captured = capsys.readouterr()
    assert "SECRET" not in captured.err + captured.out + caplog.text
