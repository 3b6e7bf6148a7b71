"""The numerics figures in the gate: the divergence ladder, canaries, baselines with per-sequence values,
and `harness run` with the SGLang test double from the first run (no reference) to a caught defect."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from harness.baselines import BaselineEntry, load_baselines, plan_update, save_baselines
from harness.compare import State, canary_verdicts, compare_metric, compare_results, exit_code
from harness.errors import ConfigError
from harness.results import CellResult, EvalResult, Metric, MetricSample, RunResult
from harness.stats import mean_estimate, paired_difference, student_t_quantile, student_t_upper_tail
from harness.suite import GateSettings, load_suite
from tests.builders import PROVENANCE
from tests.fake_cells import FAKE_ENGINES

GATE = GateSettings()
PROTOCOL = {"eval": "numerics", "protocol": "topk-kld", "dataset": "gsm8k-train", "sequences": 8, "window": 64,
            "top_logprobs": 20, "tail": "bucket-lower-bound", "reference": "m/bf16/none/tp1",
            "token_sha256": "t" * 64, "reference_sha256": "r" * 64}


def values(base: float, step: float, n: int = 8) -> dict[str, float]:
    return {f"seq-{i:04d}": base + step * ((i * 7) % 5 - 2) for i in range(n)}


def shifted(table: dict[str, float], by: float, jitter: float = 0.0) -> dict[str, float]:
    return {key: value + by + jitter * ((index * 3) % 4 - 1.5) for index, (key, value) in enumerate(table.items())}


def sample(table: dict[str, float], protocol: dict | None = None) -> MetricSample:
    return MetricSample(sum(table.values()) / len(table), len(table), None, dict(protocol or PROTOCOL), table)


def entry(table: dict[str, float] | None, *, value: float | None = None, ceiling: float | None = None,
          metric: str = "numerics.kld") -> BaselineEntry:
    if table is not None:
        value = sum(table.values()) / len(table)
    return BaselineEntry(metric=metric, provenance=PROVENANCE, value=value, n=None if table is None else len(table),
                         ceiling=ceiling, protocol=dict(PROTOCOL), values=table)


# --- statistics -----------------------------------------------------------------------------------------------

def test_student_t_against_known_values_and_symmetry():
    assert student_t_quantile(0.975, 10) == pytest.approx(2.228138851986274, abs=1e-12)
    assert student_t_quantile(0.995, 63) == pytest.approx(2.6561, abs=1e-4)
    assert student_t_upper_tail(2.228138851986274, 10) == pytest.approx(0.025, abs=1e-13)
    assert student_t_upper_tail(0.0, 7) == 0.5
    for t in (-4.0, -1.0, 0.3, 2.5):
        assert student_t_upper_tail(t, 5) + student_t_upper_tail(-t, 5) == pytest.approx(1.0, abs=1e-14)
    # df = 1 is the Cauchy distribution: P(T >= t) = 1/2 - atan(t)/pi.
    assert student_t_upper_tail(3.0, 1) == pytest.approx(0.5 - math.atan(3.0) / math.pi, abs=1e-14)


@pytest.mark.slow  # seconds of pure computation: not in `make test-fast`
def test_student_t_agrees_with_scipy_where_it_is_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 30, 255):
        for t in (-6.0, -0.4, 1.0, 3.5, 12.0):
            assert student_t_upper_tail(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-10, abs=1e-300)
        assert student_t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-9)


def test_mean_estimate_and_paired_difference():
    estimate = mean_estimate([1.0, 2.0, 3.0, 4.0])
    assert estimate.mean == 2.5 and estimate.stderr == pytest.approx(math.sqrt(5 / 3 / 4))
    assert estimate.ci95 == pytest.approx((2.5 - 3.182446305284263 * estimate.stderr,
                                           2.5 + 3.182446305284263 * estimate.stderr))
    before = values(0.1, 0.01)
    same = paired_difference(before, dict(before))
    assert (same.mean_delta, same.p_increase, same.p_decrease) == (0.0, 1.0, 1.0)  # A/A: never an alarm
    constant = paired_difference(before, shifted(before, 0.002))
    assert constant.p_increase == 0.0 and constant.p_decrease == 1.0  # the same rise everywhere: certain
    noisy = paired_difference(before, shifted(before, 0.002, jitter=0.004))
    assert noisy.n == 8 and 0.0 < noisy.p_increase < 0.5 < noisy.p_decrease
    assert paired_difference({"a": 1.0}, {"a": 2.0}) is None


# --- the divergence ladder -------------------------------------------------------------------------------

def test_a_significant_and_large_rise_regresses():
    before = values(0.10, 0.01)
    verdict = compare_metric("numerics.kld", sample(shifted(before, 0.01, jitter=0.002)), entry(before), GATE)
    assert verdict.state is State.REGRESSED and verdict.test == "paired-t" and verdict.p_value < 1e-4
    assert verdict.delta == pytest.approx(0.01) and "paired t over 8 items" in verdict.reason


def test_a_significant_rise_below_the_minimum_effect_passes():
    before = values(0.10, 0.01)
    verdict = compare_metric("numerics.kld", sample(shifted(before, 0.001)), entry(before), GATE)
    assert verdict.state is State.PASS and verdict.p_value == 0.0  # certain, but smaller than the minimum effect


def test_a_large_rise_within_noise_passes():
    before = values(0.10, 0.01)
    verdict = compare_metric("numerics.kld", sample(shifted(before, 0.003, jitter=0.05)), entry(before), GATE)
    assert verdict.state is State.PASS and verdict.p_value > GATE.alpha


def test_a_fall_improves_and_identical_values_pass():
    before = values(0.10, 0.01)
    assert compare_metric("numerics.kld", sample(shifted(before, -0.02, 0.001)), entry(before),
                          GATE).state is State.IMPROVED
    assert compare_metric("numerics.kld", sample(dict(before)), entry(before), GATE).state is State.PASS


def test_ceiling_protocol_and_missing_values():
    before = values(0.10, 0.01)
    assert compare_metric("numerics.kld", sample(before), entry(None, ceiling=0.05), GATE).state is State.REGRESSED
    assert compare_metric("numerics.kld", sample(before), entry(None, ceiling=0.5), GATE).state is State.PASS
    other = compare_metric("numerics.kld", sample(before, {**PROTOCOL, "reference_sha256": "x" * 64}),
                           entry(before), GATE)
    assert other.state is State.NOT_COMPARABLE and "reference_sha256" in other.reason
    lonely = compare_metric("numerics.kld", MetricSample(0.1, 8, None, dict(PROTOCOL), None), entry(before), GATE)
    assert lonely.state is State.NOT_COMPARABLE and "no per-item values" in lonely.reason


# --- canaries --------------------------------------------------------------------------------------------------

def numerics_result(cell_id: str, table: dict[str, float], canary_of: str | None = None) -> CellResult:
    evaluation = EvalResult("numerics", dict(PROTOCOL), {"kld": Metric(sum(table.values()) / len(table), len(table))},
                            item_values={"kld": table})
    cell = {"canary_of": canary_of} if canary_of else {}
    return CellResult(cell_id, "s", "ok", cell, evals={"numerics": evaluation})


def test_a_caught_canary_passes_and_a_missed_one_regresses():
    from harness.baselines import Baselines

    before = values(0.10, 0.01)
    baselines = Baselines("s", None, {"m/fq/none/tp1": {"numerics.kld": entry(before)}})
    results = {"m/fq/none/tp1": numerics_result("m/fq/none/tp1", before),
               "bad/fq/none/tp1": numerics_result("bad/fq/none/tp1", shifted(before, 0.5, 0.01), "m/fq/none/tp1"),
               "meek/fq/none/tp1": numerics_result("meek/fq/none/tp1", dict(before), "m/fq/none/tp1")}
    canaries = {"bad/fq/none/tp1": "m/fq/none/tp1", "meek/fq/none/tp1": "m/fq/none/tp1"}
    verdicts = compare_results(list(results), results, baselines, GATE, canaries=canaries)
    by_cell = {(v.cell_id, v.metric): v for v in verdicts}
    caught = by_cell[("bad/fq/none/tp1", "numerics.kld")]
    assert caught.state is State.REGRESSED and caught.expected and caught.reason.startswith("canary caught")
    missed = by_cell[("meek/fq/none/tp1", "cell")]
    assert missed.state is State.REGRESSED and not missed.expected and "canary not caught" in missed.reason
    assert exit_code(verdicts) == 1
    assert exit_code([v for v in verdicts if v.cell_id != "meek/fq/none/tp1"]) == 0


def test_a_canary_that_did_not_measure_keeps_its_infrastructure_verdict():
    from harness.baselines import Baselines

    result = CellResult("bad/fq/none/tp1", "s", "infra_error", {"canary_of": "m/fq/none/tp1"})
    verdicts = compare_results(["bad/fq/none/tp1"], {"bad/fq/none/tp1": result},
                               Baselines("s", None, {"m/fq/none/tp1": {"numerics.kld": entry(values(0.1, 0.01))}}),
                               GATE, canaries={"bad/fq/none/tp1": "m/fq/none/tp1"})
    assert [v.state for v in verdicts] == [State.INFRA_ERROR] and exit_code(verdicts) == 3
    # Measured but no verdict at all (a cell without gated figures): still not caught.
    (missed,) = canary_verdicts("bad/fq/none/tp1", "m/fq/none/tp1", [])
    assert missed.state is State.REGRESSED and missed.metric == "cell"


def test_canaries_are_checked_in_the_suite(write_suite, base_suite):
    base_suite.update(matrix={"quant": ["quark-mxfp4"], "spec": ["none"], "tp": [8]})
    base_suite["models"] = [
        {"id": "m", "checkpoints": {"quark-mxfp4": "a"}},
        {"id": "bad", "checkpoints": {"quark-mxfp4": "b"}, "canary_of": "m"},
    ]
    from harness.matrix import expand

    cells = {c.id: c for c in expand(load_suite(write_suite(base_suite)))}
    assert cells["bad/quark-mxfp4/none/tp8"].baseline_id == "m/quark-mxfp4/none/tp8"
    assert cells["bad/quark-mxfp4/none/tp8"].resolved()["canary_of"] == "m/quark-mxfp4/none/tp8"
    assert cells["m/quark-mxfp4/none/tp8"].baseline_id is None
    base_suite["models"][1]["canary_of"] = "mm"
    with pytest.raises(ConfigError, match=r"models\[1\].canary_of: unknown model 'mm'.*did you mean 'm'"):
        load_suite(write_suite(base_suite))
    base_suite["models"][1].update(canary_of="m", matrix={"tp": [4]})
    with pytest.raises(ConfigError, match="canary cell bad/quark-mxfp4/none/tp4 has no counterpart "
                                          "m/quark-mxfp4/none/tp4"):
        expand(load_suite(write_suite(base_suite)))


# --- baselines -------------------------------------------------------------------------------------------------

def run_of(*cells: CellResult, verdicts=()) -> RunResult:
    return RunResult("r1", "s", tuple(c.cell_id for c in cells), cells, verdicts=tuple(verdicts))


def test_divergence_baselines_round_trip_with_their_per_sequence_values(tmp_path):
    from harness.baselines import Baselines

    table = values(0.1, 0.01)
    run = run_of(numerics_result("m/fq/none/tp1", table), numerics_result("bad/fq/none/tp1", table, "m/fq/none/tp1"))
    updated, changes, refused = plan_update(Baselines("s", tmp_path / "s.yaml", {}), run, today="2026-11-29")
    assert [c.cell_id for c in changes] == ["m/fq/none/tp1"]
    assert refused == ["bad/fq/none/tp1: a canary of m/fq/none/tp1: never promoted"]
    save_baselines(updated)
    stored = json.loads((tmp_path / "outcomes" / "s" / "m__fq__none__tp1.numerics.kld.json").read_text())
    assert stored["kind"] == "harness.item_values" and stored["values"] == list(table.values())
    loaded = load_baselines(tmp_path / "s.yaml").entry("m/fq/none/tp1", "numerics.kld")
    assert loaded.values == table and loaded.n == 8 and loaded.protocol == PROTOCOL
    assert compare_metric("numerics.kld", sample(table), loaded, GATE).state is State.PASS


@pytest.mark.parametrize("body, message", [
    ({"value": 0.1, "floor": 0.0}, "divergence metrics take a ceiling, not a floor"),
    ({"value": 0.1}, "a divergence value needs the number of items"),
    ({"value": 0.1, "n": 3}, "missing required key 'protocol'"),
    ({"value": 0.1, "n": 2, "outcomes": "v.json"}, "v.json gives a mean of 0.3, value says 0.1"),
])
def test_strict_divergence_entries(tmp_path, body, message):
    (tmp_path / "v.json").write_text(json.dumps({"kind": "harness.item_values", "schema_version": 1,
                                                 "ids": ["a", "b"], "values": [0.2, 0.4]}))
    if "n" in body and "outcomes" in body:
        body["protocol"] = {"eval": "numerics", "protocol": "topk-kld"}
    document = {"kind": "harness.baselines", "schema_version": 1, "suite": "s",
                "cells": {"m/fq/none/tp1": {"numerics.kld": {**body, "provenance": {"source": "harness",
                                                                                    "date": "2026-11-29"}}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=message):
        load_baselines(tmp_path / "s.yaml")


# --- `harness run` end to end on the SGLang test double ---------------------------------------------------------

def numerics_suite(tmp_path, *, noise: str = "noise0.6") -> None:
    suite = {
        "schema_version": 1, "name": "fake-numerics", "engine": "sglang",
        "hardware": {"vendor": "amd", "gpus": 8},
        "timeouts": {"launch_s": 30, "eval_s": 60, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES), "FAKE_SGLANG_LOAD_S": "0"}},
        # The test double's process tree is a few tens of MiB, sampled twice in a one-second cell: its RSS is
        # noise at the default tolerance (20%, at least 0.05 GiB), and this test is about the numerics gate.
        "gate": {"memory": {"memory.host_rss_peak_gib": {"rel": 0.1, "abs_gib": 0.5}}},
        "evals": {"numerics": {"protocol": "topk-kld", "dataset": "synthetic-arith-v1", "sequences": 8,
                               "window": 32, "top_logprobs": 5, "reference": "m/bf16/none/tp1"}},
        "matrix": {"spec": ["none"], "tp": [1]},
        "models": [
            {"id": "m", "checkpoints": {"bf16": "fake/bf16", "quark-fp8": "fake/fp8-noise0.2"},
             "matrix": {"quant": ["bf16", "quark-fp8"]}},
            {"id": "m-defect", "canary_of": "m", "checkpoints": {"quark-fp8": f"fake/fp8-{noise}"},
             "matrix": {"quant": ["quark-fp8"]}},
        ],
    }
    (tmp_path / "suites").mkdir(exist_ok=True)
    (tmp_path / "suites" / "fake-numerics.yaml").write_text(yaml.safe_dump(suite))


def harness(tmp_path, *args: str) -> int:
    from harness.cli import main

    dirs = ["--baselines-dir", str(tmp_path / "baselines")]
    if args[0] == "run":
        dirs += ["--suites-dir", str(tmp_path / "suites"), "--reports-dir", str(tmp_path / "reports"),
                 "--no-preflight"]
    return main([*args, *dirs])


@pytest.mark.slow  # seconds of pure computation: not in `make test-fast`
def test_from_the_first_run_to_a_caught_defect(tmp_path, capsys):
    numerics_suite(tmp_path)
    # 1. No stored reference: the reference cell records one; the others are not launched (exit 2).
    assert harness(tmp_path, "run", "--suite", "fake-numerics", "--run-id", "first") == 2
    err = capsys.readouterr().err
    assert "m/quark-fp8/none/tp1: not launched: numerics: no stored reference" in err
    assert (tmp_path / "reports" / "first" / "cells" / "m__bf16__none__tp1" / "numerics-reference.npz").exists()
    # 2. Promoting the run stores the reference beside the baselines.
    assert harness(tmp_path, "baseline", "update", "--from", str(tmp_path / "reports" / "first")) == 0
    out = capsys.readouterr().out
    assert "update  m/bf16/none/tp1 numerics reference: none -> " in out
    stored = tmp_path / "baselines" / "references" / "fake-numerics" / "m__bf16__none__tp1.numerics.npz"
    assert stored.exists()
    # 3. Every cell measures against it; the canary's counterpart has no baselines yet: nothing to catch it by.
    assert harness(tmp_path, "run", "--suite", "fake-numerics", "--run-id", "second") == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "reports" / "second" / "results.json").read_text())
    (canary,) = [v for v in results["verdicts"] if v["cell_id"].startswith("m-defect") and v["metric"] == "cell"]
    assert canary["state"] == "NO_BASELINE" and "canary: m/quark-fp8/none/tp1 has no baselines yet" in canary["reason"]
    kld = {c["cell_id"]: c["evals"]["numerics"]["metrics"]["kld"]["value"] for c in results["cells"]}
    assert kld["m/bf16/none/tp1"] < 1e-6 < 1e-3 < kld["m/quark-fp8/none/tp1"] < kld["m-defect/quark-fp8/none/tp1"]
    assert harness(tmp_path, "baseline", "update", "--from", str(tmp_path / "reports" / "second")) == 0
    out = capsys.readouterr().out
    assert "refused  m-defect/quark-fp8/none/tp1: a canary of m/quark-fp8/none/tp1: never promoted" in out
    # 4. Gated: the FP8 cell passes against itself, the defect is caught, the run exits 0.
    assert harness(tmp_path, "run", "--suite", "fake-numerics", "--run-id", "third") == 0
    out = capsys.readouterr().out
    caught = [line for line in out.splitlines() if line.startswith("m-defect/quark-fp8/none/tp1  numerics.kld")]
    assert caught and caught[0].rstrip().endswith("caught")
    verdicts = json.loads((tmp_path / "reports" / "third" / "results.json").read_text())["verdicts"]
    states = {(v["cell_id"], v["metric"]): (v["state"], v["expected"]) for v in verdicts}
    assert states[("m/quark-fp8/none/tp1", "numerics.kld")] == ("PASS", False)
    assert states[("m-defect/quark-fp8/none/tp1", "numerics.kld")] == ("REGRESSED", True)
    junit = (tmp_path / "reports" / "third" / "junit.xml").read_text()
    assert 'failures="0"' in junit


@pytest.mark.process
def test_the_engine_python_comes_from_the_suite_and_must_exist(tmp_path, capsys):
    numerics_suite(tmp_path)
    path = tmp_path / "suites" / "fake-numerics.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["python"] = "no-such-venv/bin/python"
    path.write_text(yaml.safe_dump(suite))
    assert harness(tmp_path, "run", "--suite", "fake-numerics", "--dry-run") == 0
    assert "argv no-such-venv/bin/python -m sglang.launch_server" in capsys.readouterr().out
    assert harness(tmp_path, "run", "--suite", "fake-numerics", "--run-id", "x") == 2
    assert ("fake-numerics.yaml: python: no-such-venv/bin/python does not exist (relative paths start in the "
            "working directory") in capsys.readouterr().err


def test_list_names_the_numerics_protocol_and_the_canaries(tmp_path, capsys):
    from harness.cli import main

    numerics_suite(tmp_path)
    assert main(["list", "--suite", "fake-numerics", "--suites-dir", str(tmp_path / "suites")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "m/bf16/none/tp1  numerics:topk-kld/8x32 tokens/top-5 vs m/bf16/none/tp1"
    assert out[2].endswith("[canary of m/quark-fp8/none/tp1: must regress]")


def test_the_minimum_effects_stand_clear_of_the_noise_measured_between_fresh_installs_and_runs():
    """The numerics gate's min_effect comes from a measurement in the repo (benchmarks/bench_numerics_noise.py):
    at least 4x the largest difference between fresh installs and runs, and none of those runs flagged."""
    from harness.metrics import METRICS
    from tests.conftest import ROOT

    record = json.loads((ROOT / "benchmarks" / "results" / "numerics-noise.json").read_text())
    assert len({run["env"]["python"] for run in record["runs"]}) >= 2 and len(record["runs"]) >= 3
    for metric in ("numerics.kld", "numerics.top1_disagreement"):
        measured = record["summary"][metric]
        assert measured["largest_difference"] > 0  # installs on another CPU do differ: the claim is measured
        assert METRICS[metric].min_effect >= 4 * measured["largest_difference"], metric
        assert measured["min_effect"] == METRICS[metric].min_effect and measured["flagged"] == 0
    assert all(run["exit_code"] == 0 for run in record["runs"])
