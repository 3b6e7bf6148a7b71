"""The eval client against a real local server: retries, failures counted, and the error-rate rule."""

from __future__ import annotations

import pytest

from harness.evals.base import EvalConfig, EvalInfraError
from harness.evals.registry import run_eval
from harness.transport import ClientSettings, Request, run_requests


def gsm8k(questions=100, concurrency=16, max_error_rate=0.02):
    return EvalConfig(name="gsm8k", protocol="sglang-fewshot", shots=0, questions=questions, max_tokens=64,
                      temperature=0.0, repeats=1, concurrency=concurrency, max_error_rate=max_error_rate)


@pytest.mark.gsm8k
def test_429_and_503_are_retried_with_backoff(stub_server):
    url = stub_server("--fail-first")
    requests = [Request(f"r{i}", "/v1/completions", {"prompt": f"Question: x{i}\nAnswer:"}) for i in range(20)]
    responses = run_requests(url, requests, ClientSettings(concurrency=8, backoff_s=0.01))
    assert all(r.error is None and r.attempts == 2 for r in responses)
    assert [r.id for r in responses] == [f"r{i}" for i in range(20)]


@pytest.mark.gsm8k
def test_failed_requests_are_counted_never_scored_wrong(stub_server):
    url = stub_server("--error-every", "25")
    result = run_eval(gsm8k(questions=100, max_error_rate=0.05), url, model="m")
    failed = [o for o in result.outcomes if o.error]
    assert result.request_errors == 4 == len(failed)  # ids 0, 25, 50, 75
    assert all(o.error.startswith("HTTP 500") for o in failed)
    assert result.metrics["accuracy"].n == 96 and result.metrics["accuracy"].value == 1.0


@pytest.mark.gsm8k
def test_too_many_failures_is_infra_error_with_partial_results(stub_server):
    url = stub_server("--error-every", "10")
    with pytest.raises(EvalInfraError) as caught:
        run_eval(gsm8k(questions=100), url, model="m")
    assert caught.value.cause == "request_errors" and "requests failed (allowed 2)" in str(caught.value)
    assert caught.value.partial["gsm8k"].request_errors > 2


def test_a_dead_server_fails_fast():
    requests = [Request(f"r{i}", "/v1/completions", {"prompt": "x"}) for i in range(50)]
    responses = run_requests("http://127.0.0.1:9", requests,
                             ClientSettings(concurrency=4, retries=1, backoff_s=0.01, max_errors=3))
    assert all(r.error for r in responses)
    assert sum(r.error.startswith("not sent") for r in responses) >= 40


@pytest.mark.gsm8k
def test_reasoning_is_stripped_in_chat_mode(stub_server):
    url = stub_server("--reasoning")
    config = EvalConfig(name="gsm8k", protocol="chat", shots=0, questions=30, max_tokens=64, temperature=0.0,
                        repeats=1, chat_template_kwargs={"thinking": True})
    result = run_eval(config, url, model="m")
    assert result.metrics["accuracy"].value == 1.0


@pytest.mark.gsm8k
def test_accuracy_and_invalid_rate_are_exact(stub_server):
    url = stub_server("--wrong-every", "4")
    result = run_eval(gsm8k(questions=200), url, model="m")
    assert result.metrics["accuracy"].value == 0.75 and result.metrics["invalid_rate"].value == 0.0
    assert result.timings["questions_per_s"] > 0 and "latency_p90_s" in result.timings
