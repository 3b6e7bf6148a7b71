"""The sequential gate (harness.sequential): its boundaries against the method authors' code (confseq), its
verdicts against today's fixed-n gate (a stop never changes what REGRESSED means), the eval that stops, the
result that records it, and the baseline update that refuses a prefix."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import sequential
from harness.baselines import Baselines, plan_update
from harness.compare import State, Verdict, compare_metric
from harness.errors import ConfigError
from harness.evals.base import EvalConfig, EvalContext
from harness.evals.registry import run_eval
from harness.report.format import mark
from harness.results import EvalResult, MetricSample, RunResult
from harness.sequential import Monitor, Reference, Rule, in_order, replay
from harness.strict import Where
from harness.suite import GateSettings, _parse_gate
from harness.transport import ClientSettings, Request, run_requests
from tests.builders import GSM8K_PROTOCOL, accuracy_entry, gsm8k_result

ROOT = Path(__file__).resolve().parent.parent
GATE = GateSettings()
RULE = Rule(GATE.alpha, GATE.min_effect_for("gsm8k.accuracy"))


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_sequential", ROOT / "benchmarks" / "bench_sequential.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stream(seed: int, n: int, accuracy: float, discordance: float, drop: float) -> tuple[dict, dict]:
    rng = random.Random(seed)
    before, now = {}, {}
    for index in range(n):
        question = f"gsm8k-test-{index:04d}"
        right = rng.random() < accuracy
        u = rng.random()
        before[question] = right
        now[question] = (u >= (discordance / 2 + drop) / accuracy) if right else (u < discordance / 2 / (1 - accuracy))
    return before, now


# --- the boundaries: confseq's own numbers ------------------------------------------------------------

def test_betting_martingales_equal_confseq_betting_mart():
    """tests/golden/confseq/betting.json.gz: confseq 0.0.11's betting_mart with lambda_predmix_eb, run on 24
    streams (paired {0, 1/2, 1}, Bernoulli, uniform) x 4 null means x both sides (tools/confseq_reference.py)."""
    body = json.loads(gzip.decompress((ROOT / "tests" / "golden" / "confseq" / "betting.json.gz").read_bytes()))
    compared = 0
    for case in body["cases"]:
        for test in case["tests"]:
            ours = sequential.capital_process(case["x"], test["m"], test["side"], case["alpha"])
            assert ours == pytest.approx(test["capital"], rel=1e-9, abs=1e-300)
            compared += len(ours)
    assert compared > 20_000


def test_the_pass_mixture_equals_confseq_diversified_betting_mart():
    """tests/golden/confseq/mixture.json.gz: confseq 0.0.11's diversified_betting_mart with one constant bet per
    share of PASS_BET_SHARES, on 12 streams (paired at several discordance rates and drops, Bernoulli) x 2 null
    means x both sides (tools/confseq_reference.py)."""
    body = json.loads(gzip.decompress((ROOT / "tests" / "golden" / "confseq" / "mixture.json.gz").read_bytes()))
    compared = 0
    for case in body["cases"]:
        assert tuple(case["shares"]) == sequential.PASS_BET_SHARES
        for test in case["tests"]:
            mixture = sequential.MixtureTest(test["m"], test["side"], 0.01)
            ours = []
            for x in case["x"]:
                mixture.observe(x)
                ours.append(mixture.capital)
            # confseq sums the bets' capitals in floats: past ~1e308 it says inf, where the log-sum here goes on
            finite = [(a, b) for a, b in zip(ours, test["capital"], strict=True) if b < 1e300]
            assert all(a > 1e300 for a, b in zip(ours, test["capital"], strict=True) if b >= 1e300)
            assert [a for a, _ in finite] == pytest.approx([b for _, b in finite], rel=1e-9, abs=1e-300)
            compared += len(finite)
    assert compared > 10_000


def test_a_cell_whose_answers_never_flip_passes_where_the_mixture_first_reaches_one_over_alpha():
    """Exactly computed: with no flip every value is 1/2 and each bet's capital is (1 + share (1/2 - m) / m)^n, so
    the stop is the first n whose mean over the bets reaches 1/alpha; the best possible, the likelihood ratio
    against "no flips" (share 1), is 0.99^-n >= 100: n = ceil(ln 100 / -ln 0.99) = 459, as a fixed-n exact test."""
    m = (1 - RULE.min_effect) / 2
    n = next(n for n in range(1, 2000) if sum((1 + share * (0.5 - m) / m) ** n for share in sequential.PASS_BET_SHARES)
             / len(sequential.PASS_BET_SHARES) >= 1 / RULE.alpha)
    assert math.ceil(math.log(100) / -math.log(0.99)) == 459 < n < 550
    before, _ = stream(1, 1319, 0.94, 0.0, 0.0)
    decision = replay(before, Reference(outcomes=before), RULE)
    assert decision.state == "PASS" and decision.asked == n


def test_the_pass_test_crosses_at_most_alpha_at_the_least_favourable_drop_exactly():
    """P(an early PASS within 1319 questions) at a true drop of min_effect, exactly (dynamic programming over
    the counts, benchmarks/bench_sequential.py): the least favourable case, answers lost and none gained, and
    one with flips both ways. Ville's inequality says at most alpha."""
    bench = load_bench()
    for lost, gained in ((0.01, 0.0), (0.02, 0.01)):
        found = bench.mixture_crossing(lost, gained, 1319, cap=60)
        assert found["crossed"] + found["escaped"] <= RULE.alpha and found["crossed"] > RULE.alpha / 2
    # Not vacuous: half the drop (no regression) is passed early often, no drop at all always.
    assert bench.mixture_crossing(0.005, 0.0, 1319, cap=60)["crossed"] > 0.1
    assert bench.mixture_crossing(0.0, 0.0, 1319, cap=60)["crossed"] == pytest.approx(1.0)


def test_clopper_pearson_bounds_equal_published_values():
    # Exact binomial bounds: 0 of 10 -> one-sided 95% upper 1 - 0.05 ** (1/10) = 0.2589 (the "rule of three"
    # family); 10 of 10 -> lower 0.05 ** (1/10) = 0.7411; 5 of 10, two-sided 95% (each side 0.025): [0.1871,
    # 0.8129] (Clopper and Pearson's table, as scipy's binomtest(5, 10).proportion_ci() prints).
    assert sequential.clopper_pearson(0, 10, 0.05, +1) == pytest.approx(1 - 0.05 ** 0.1, abs=1e-9)
    assert sequential.clopper_pearson(10, 10, 0.05, -1) == pytest.approx(0.05 ** 0.1, abs=1e-9)
    assert sequential.clopper_pearson(5, 10, 0.025, -1) == pytest.approx(0.18709, abs=1e-5)
    assert sequential.clopper_pearson(5, 10, 0.025, +1) == pytest.approx(0.81291, abs=1e-5)


# --- the rule -----------------------------------------------------------------------------------------

def prefix_verdict(before: dict, now: dict, asked: list[str], paired: bool) -> State:
    """Today's fixed-n gate (harness.compare) on the questions asked."""
    table = {q: now[q] for q in asked}
    sample = MetricSample(sum(table.values()) / len(table), len(table), table, dict(GSM8K_PROTOCOL))
    entry = accuracy_entry({q: before[q] for q in asked}) if paired else accuracy_entry(
        value=sum(before.values()) / len(before), n=len(before))
    return compare_metric("gsm8k.accuracy", sample, entry, GATE).state


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), accuracy=st.sampled_from([0.3, 0.6, 0.94]),
       discordance=st.sampled_from([0.0, 0.02, 0.1]), drop=st.sampled_from([0.0, 0.005, 0.01, 0.03, 0.1, -0.03]),
       paired=st.booleans())
def test_a_stop_never_changes_what_a_verdict_means(seed, accuracy, discordance, drop, paired):
    """REGRESSED from a stop is REGRESSED by today's gate on the questions asked (significant at alpha by the
    exact McNemar or Fisher's exact test, and at least min_effect), and significant anytime besides; a stop
    for PASS or IMPROVED never hides a fixed-n REGRESSED on those questions."""
    drop = min(drop, accuracy - discordance / 2)
    before, now = stream(seed, 400, accuracy, discordance, drop)
    reference = Reference(outcomes=before) if paired else Reference(value=sum(before.values()) / 400, n=400)
    decision = replay(now, reference, RULE)
    if decision is None:
        return
    asked = in_order(now)[: decision.asked]
    fixed = prefix_verdict(before, now, asked, paired)
    if decision.state == "REGRESSED":
        assert fixed is State.REGRESSED and decision.p_value < RULE.alpha and decision.delta <= -RULE.min_effect
    else:
        assert fixed is not State.REGRESSED
    if decision.state == "IMPROVED":
        assert fixed is State.IMPROVED and decision.p_value < RULE.alpha


def test_the_gate_at_the_end_of_the_run_reaches_the_monitors_decision():
    before, now = stream(3, 1319, 0.94, 0.02, 0.10)
    decision = replay(now, Reference(outcomes=before), RULE)
    assert decision is not None and decision.state == "REGRESSED" and decision.asked < 300
    asked = in_order(now)[: decision.asked]
    table = {q: now[q] for q in asked}
    record = sequential.record(decision, 1319, decision.asked, answered=decision.asked + 7)
    sample = MetricSample(sum(table.values()) / len(table), len(table), table, dict(GSM8K_PROTOCOL), sequential=record)
    verdict = compare_metric("gsm8k.accuracy", sample, accuracy_entry(before), GATE)
    assert verdict.state is State.REGRESSED and verdict.test == "sequential-betting-paired"
    assert verdict.reason.startswith(f"decided after {decision.asked} of 1319 questions: drop ")
    assert mark(verdict) == f"REGRESSED (after {decision.asked} of 1319)"
    assert Verdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict
    # Against a baseline the stop no longer decides on (here: the same answers), the fixed-n test on the prefix.
    same = compare_metric("gsm8k.accuracy", sample, accuracy_entry({**before, **table}), GATE)
    assert same.state is State.PASS and same.reason.startswith("stopped early but undecided")


def test_the_numpy_twin_of_the_benchmark_is_the_monitor():
    bench = load_bench()
    tails = bench.BinomialTails(400)
    for seed, (accuracy, discordance, drop) in enumerate([(0.94, 0.0, 0.0), (0.94, 0.02, 0.05), (0.6, 0.1, 0.0),
                                                          (0.8, 0.04, 0.02), (0.5, 0.3, -0.05)] * 4):
        before, now = stream(seed, 400, accuracy, discordance, drop)
        order = in_order(now)
        row_before = bench.np.array([[before[q] for q in order]])
        row_now = bench.np.array([[now[q] for q in order]])
        twin = bench.paired_run(row_before, row_now, tails)
        decision = replay(now, Reference(outcomes=before), RULE)
        expected_verdict = {"REGRESSED": -1, "PASS": 0, "IMPROVED": 1}
        if decision is None:
            assert not twin["early"][0]
        else:
            assert twin["early"][0] and twin["asked"][0] == decision.asked
            assert twin["verdict"][0] == expected_verdict[decision.state]


def test_an_unpaired_sequential_eval_at_its_budget_is_judged_at_the_alpha_its_early_looks_left():
    """Against a value and n, the early looks spend UNPAIRED_EARLY_SHARE of alpha, so the fixed-n test at the
    budget has 0.8 alpha: 1208 of 1319 right against 1240 of 1319 (Fisher p = 0.0097) is REGRESSED without
    --sequential and PASS with it; 1207 (p = 0.0080) is not."""
    assert sequential.final_alpha(RULE, paired=False) == pytest.approx(0.008)
    assert sequential.final_alpha(RULE, paired=True) == RULE.alpha
    entry = accuracy_entry(value=1240 / 1319, n=1319)
    record = sequential.record(None, 1319, 1319, answered=1319)
    for right, alone, after_looks in ((1208, State.REGRESSED, State.PASS), (1207, State.REGRESSED, State.PASS),
                                      (1206, State.REGRESSED, State.REGRESSED)):
        sample = MetricSample(right / 1319, 1319, None, dict(GSM8K_PROTOCOL))
        assert compare_metric("gsm8k.accuracy", sample, entry, GATE).state is alone
        looked = dataclasses.replace(sample, sequential=record)
        assert compare_metric("gsm8k.accuracy", looked, entry, GATE).state is after_looks


def test_the_numpy_twin_of_the_unpaired_form_is_the_monitor():
    bench = load_bench()
    decided = 0
    for seed, (accuracy, drop) in enumerate([(0.94, 0.0), (0.94, 0.15), (0.6, 0.2), (0.8, 0.3), (0.5, -0.1)] * 3):
        before, now = stream(seed, 400, accuracy, 0.0, drop)
        order = in_order(now)
        right_before = sum(before.values())
        twin = bench.unpaired_run(bench.np.array([right_before]), 400, bench.np.array([[now[q] for q in order]]))
        decision = replay(now, Reference(value=right_before / 400, n=400), RULE)
        if decision is None:
            assert not twin["early"][0]
        else:
            assert twin["early"][0] and twin["asked"][0] == decision.asked
            assert twin["verdict"][0] == (-1 if decision.state == "REGRESSED" else 0)
            decided += 1
    assert decided >= 5


def test_a_floor_needs_evidence_above_it_before_a_pass():
    before, now = stream(2, 1319, 0.94, 0.0, 0.0)
    plain = replay(now, Reference(outcomes=before), RULE)
    floored = replay(now, Reference(outcomes=before, floor=0.93), RULE)
    assert plain.state == "PASS" and (floored is None or floored.asked > plain.asked)


def test_a_reference_needs_outcomes_or_a_value_and_n():
    with pytest.raises(ValueError):
        Monitor(Reference(value=0.9), RULE)


# --- config, transport, eval, result, baseline -------------------------------------------------------------

def test_gate_sequential_is_a_strict_boolean():
    assert _parse_gate({"sequential": True}, Where("s.yaml").key("gate")).sequential is True
    assert _parse_gate({}, Where("s.yaml").key("gate")).sequential is False
    with pytest.raises(ConfigError, match=r"gate\.sequential"):
        _parse_gate({"sequential": "yes"}, Where("s.yaml").key("gate"))
    assert GateSettings.from_dict({"alpha": 0.01}).sequential is False  # results recorded before it


def test_a_stop_cancels_what_is_in_flight(stub_server):
    url = stub_server("--latency-s", "0.05")
    requests = [Request(f"r{i:03d}", "/v1/completions", {"prompt": f"Question: x{i}\nAnswer:"}) for i in range(400)]
    seen = []
    responses = run_requests(url, requests, ClientSettings(concurrency=8), seen.append, stop=lambda: len(seen) >= 20)
    assert 20 <= len(responses) < 40 and all(r.error is None for r in responses)


def gsm8k_config(questions: int) -> EvalConfig:
    return EvalConfig(name="gsm8k", protocol="sglang-fewshot", shots=0, questions=questions, max_tokens=64,
                      temperature=0.0, repeats=1, concurrency=16)


@pytest.mark.gsm8k
def test_an_eval_stops_once_a_regression_is_decided(stub_server):
    url = stub_server("--wrong-every", "3")  # a third of the answers wrong, against a baseline that was all right
    budget = 600
    baseline = {f"gsm8k-test-{i:04d}": True for i in range(budget)}
    context = EvalContext(sequential={"gsm8k": (Reference(outcomes=baseline), RULE)})
    result = run_eval(gsm8k_config(budget), url, model="m", context=context)
    record = result.details["sequential"]
    assert record["decided"] == "REGRESSED" and record["stopped_early"] and record["budget"] == budget
    assert record["asked"] == len(result.outcomes) < 100 <= budget and record["answered"] >= record["asked"]
    assert [o.id for o in result.outcomes] == in_order(baseline)[: record["asked"]] or \
        sorted(o.id for o in result.outcomes) == sorted(in_order(baseline)[: record["asked"]])
    assert result.metrics["accuracy"].n == record["asked"]


@pytest.mark.gsm8k
def test_an_eval_without_a_decision_asks_every_question(stub_server):
    url = stub_server()
    baseline = {f"gsm8k-test-{i:04d}": True for i in range(100)}
    context = EvalContext(sequential={"gsm8k": (Reference(outcomes=baseline), RULE)})
    result = run_eval(gsm8k_config(100), url, model="m", context=context)
    assert result.details["sequential"] == {"order": sequential.ORDER, "budget": 100, "asked": 100, "answered": 100,
                                            "decided": None, "stopped_early": False}
    assert len(result.outcomes) == 100 and result.metrics["accuracy"].value == 1.0


def stopped_result(cell_id: str) -> object:
    result = gsm8k_result(cell_id, {f"q{i}": True for i in range(50)}, memory={"weights_gib": 1.5})
    evaluation = result.evals["gsm8k"]
    record = {"order": sequential.ORDER, "budget": 1319, "asked": 50, "answered": 55, "decided": "PASS",
              "stopped_early": True}
    evals = {"gsm8k": dataclasses.replace(evaluation, details={"sequential": record})}
    return dataclasses.replace(result, evals=evals)


def test_baseline_update_refuses_a_figure_of_an_eval_that_stopped_early(tmp_path):
    baselines = Baselines("glm5", tmp_path / "glm5.yaml", {})
    run = RunResult(run_id="r1", suite="glm5", planned=("a/q/none/tp1",), cells=(stopped_result("a/q/none/tp1"),),
                    verdicts=(), harness_version="0.1.0")
    for force in (False, True):
        _, changes, refused = plan_update(baselines, run, today="d", force=force)
        assert [c.metric for c in changes] == ["memory.weights_gib"]
        assert refused == ["a/q/none/tp1: gsm8k.accuracy: its eval stopped early (sequential: decided after 50 of "
                           "1319 questions); a baseline needs every question's outcome: run it without --sequential "
                           "(--force cannot make a prefix whole)"]


def test_the_record_travels_through_results_json():
    from harness.results import cell_result_from_dict, cell_result_to_dict

    result = stopped_result("a/q/none/tp1")
    again = cell_result_from_dict(json.loads(json.dumps(cell_result_to_dict(result))), Path("result.json"))
    assert again.evals["gsm8k"].details["sequential"]["asked"] == 50
    assert isinstance(again.evals["gsm8k"], EvalResult)


def test_the_run_gives_each_cell_its_baselines_reference_only_under_gate_sequential():
    from harness import pipeline

    def references(suite: str, sequential_on: bool) -> dict:
        the_plan = pipeline.plan(suite, suites_dir=ROOT / "suites", baselines_dir=ROOT / "baselines",
                                 cell_patterns=None)
        gate = dataclasses.replace(the_plan.suite.gate, sequential=sequential_on)
        return pipeline.sequential_references(
            dataclasses.replace(the_plan, suite=dataclasses.replace(the_plan.suite, gate=gate)))

    assert references("local", False) == {}
    found = references("local", True)
    assert sorted(found) == ["tiny-qwen3/bf16/none/tp1", "tiny-qwen3/quark-fp8/none/tp1",
                             "tiny-qwen3/quark-mxfp4/none/tp1"]
    reference, rule = found["tiny-qwen3/quark-mxfp4/none/tp1"]["gsm8k"]
    assert reference.paired and len(reference.outcomes) == 200 and rule == RULE
    # local-defects is gated against local's baselines: the same reference.
    assert references("local-defects", True)["tiny-qwen3/quark-mxfp4/none/tp1"]["gsm8k"] == (reference, rule)


def test_a_cell_on_other_kernels_than_its_baseline_runs_its_eval_in_full():
    """Its figure will be NOT_COMPARABLE (test `kernels`), so the sequential gate has nothing to stop on."""
    from harness import pipeline
    from harness.kernels.selection import AITER_REFERENCE

    the_plan = pipeline.plan("local", suites_dir=ROOT / "suites", baselines_dir=ROOT / "baselines",
                             cell_patterns=None)
    the_plan = dataclasses.replace(the_plan, suite=dataclasses.replace(
        the_plan.suite, gate=dataclasses.replace(the_plan.suite.gate, sequential=True)))
    assert len(pipeline.sequential_references(the_plan)) == 3
    on_reference = [dataclasses.replace(cell, server=dataclasses.replace(cell.server, kernels=AITER_REFERENCE))
                    for cell in the_plan.cells]  # (an SGLang suite's selection; the cells as it leaves them)
    assert pipeline.sequential_references(dataclasses.replace(the_plan, cells=on_reference)) == {}
