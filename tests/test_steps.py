"""Step detection and the tolerance band on synthetic series: the gate's own test between windows."""

from __future__ import annotations

import dataclasses
import random

import pytest

from harness.compare import State, compare_metric
from harness.history import Point
from harness.results import MetricSample
from harness.steps import PROTOCOL_CHANGE, detect_steps, tolerance_band
from harness.suite import GateSettings
from tests.builders import GSM8K_PROTOCOL, accuracy_entry, memory_entry, outcomes

GATE = GateSettings()


def series(metric: str, values: list[float], *, n: int | None = None, protocols: list[dict] | None = None,
           per_item: list[dict[str, float]] | None = None) -> list[Point]:
    """One point per run, run i on engine build 1.0.i (commit c<i>)."""
    points = []
    for i, value in enumerate(values):
        protocol = (protocols[i] if protocols else GSM8K_PROTOCOL) if metric.endswith("accuracy") else None
        sample = MetricSample(value, n, None, protocol, per_item[i] if per_item else None)
        points.append(Point("glm5", "glm5/quark-mxfp4/mtp/tp8", metric, f"night-{i:02d}", "glm5",
                            f"2026-11-{i + 1:02d}T02:00:00Z", value, n=n, engine="sglang",
                            engine_version=f"0.5.{i}", engine_commit=f"c{i:04d}", sample=sample))
    return points


def binomial(rng: random.Random, p: float, n: int) -> float:
    return sum(rng.random() < p for _ in range(n)) / n


def test_a_clear_accuracy_drop_is_found_at_the_first_run_after_it_and_names_its_engine():
    rng = random.Random(7)
    values = [binomial(rng, 0.94, 1319) for _ in range(6)] + [binomial(rng, 0.88, 1319) for _ in range(5)]
    steps = detect_steps(series("gsm8k.accuracy", values, n=1319), GATE)
    assert [(s.index, s.direction) for s in steps] == [(6, "REGRESSED")]
    step = steps[0]
    assert step.point.run_id == "night-06" and step.point.engine_version == "0.5.6"
    assert step.before == pytest.approx(0.94, abs=0.02) and step.after == pytest.approx(0.88, abs=0.02)
    assert "REGRESSED from run night-06" in step.describe() and "sglang 0.5.6 @ c0006" in step.describe()
    assert step.test == "fisher-exact" and step.p_value < GATE.alpha


def test_a_step_between_windows_pairs_per_question_outcomes_and_says_what_it_compared():
    """Runs that record per-question outcomes (the same 200 questions every night): the windows are paired
    question by question (McNemar on each question's majority outcome), as a run is against its baseline, and
    the step says which runs it compared; where the windows are one run each it is that run's own test."""
    tables = [outcomes(190, 200), outcomes(190, 200), outcomes(190, 200), outcomes(154, 200, offset=10),
              outcomes(190, 200)]
    points = [dataclasses.replace(point, sample=dataclasses.replace(point.sample, outcomes=table))
              for point, table in zip(series("gsm8k.accuracy", [sum(t.values()) / 200 for t in tables], n=200),
                                      tables, strict=True)]
    [step] = detect_steps(points, GATE)
    assert step.index == 3 and step.direction == "REGRESSED" and step.test == "mcnemar-exact"
    assert step.reason.startswith("windows: 3 runs (night-00 .. night-02, mean 0.95) against 2 runs "
                                  "(night-03 .. night-04, mean 0.86): ")
    own = compare_metric("gsm8k.accuracy", points[3].sample, accuracy_entry(tables[0]), GATE)  # the run's test
    assert step.p_value == own.p_value and "(b=46 c=10 over 200 paired questions)" in step.reason
    [single] = detect_steps(points[2:4], GATE, window=1)
    assert single.p_value == own.p_value and single.reason.startswith("windows: 1 run (night-02, mean 0.95) against")


def test_noise_alone_finds_no_step():
    rng = random.Random(11)
    for seed in range(20):  # twenty series of thirty nights each, the same true accuracy every night
        rng.seed(seed)
        values = [binomial(rng, 0.93, 1319) for _ in range(30)]
        assert detect_steps(series("gsm8k.accuracy", values, n=1319), GATE) == [], seed
    memory = [40.0 + rng.gauss(0, 0.1) for _ in range(30)]  # MiB-level jitter, far below the tolerance
    assert detect_steps(series("memory.weights_gib", memory), GATE) == []
    accept = [2.70 + rng.gauss(0, 0.03) for _ in range(30)]
    assert detect_steps(series("spec.accept_length", accept), GATE) == []


def test_a_drop_below_the_minimum_effect_is_no_step_even_when_significant():
    # 0.5 points over 50,000 questions is significant, and smaller than gsm8k's min_effect of 1 point.
    assert detect_steps(series("gsm8k.accuracy", [0.940] * 5 + [0.935] * 5, n=50_000), GATE) == []
    assert detect_steps(series("gsm8k.accuracy", [0.940] * 5 + [0.925] * 5, n=50_000), GATE)[0].index == 5


def test_memory_creep_and_accept_length_slide_are_found_where_the_gate_tolerance_is_crossed():
    memory = [40.0] * 4 + [43.5] * 4  # +3.5 GiB > max(0.5, 5% of 40)
    (step,) = detect_steps(series("memory.weights_gib", memory), GATE)
    assert (step.index, step.direction, step.test) == (4, "REGRESSED", "tolerance")
    accept = [2.7] * 5 + [2.4] * 3 + [2.75] * 3  # GLM-5 MTP's accept length slides, then recovers
    steps = detect_steps(series("spec.accept_length", accept), GATE)
    assert [(s.index, s.direction) for s in steps] == [(5, "REGRESSED"), (8, "IMPROVED")]
    assert steps[0].point.engine_commit == "c0005"


def test_a_single_bad_run_is_a_step_down_and_one_back_up():
    values = [0.95] * 4 + [0.45] + [0.95] * 2
    steps = detect_steps(series("gsm8k.accuracy", values, n=200), GATE)
    assert [(s.index, s.direction) for s in steps] == [(4, "REGRESSED"), (5, "IMPROVED")]


def test_the_latest_run_alone_can_be_a_step():
    steps = detect_steps(series("gsm8k.accuracy", [0.95, 0.95, 0.95, 0.95, 0.30], n=200), GATE)
    assert [(s.index, s.point.run_id) for s in steps] == [(4, "night-04")]


def test_a_protocol_change_is_a_step_and_figures_across_it_are_never_compared():
    other = {**GSM8K_PROTOCOL, "shots": 8}
    protocols = [GSM8K_PROTOCOL] * 4 + [other] * 4
    steps = detect_steps(series("gsm8k.accuracy", [0.94] * 4 + [0.80] * 4, n=1319, protocols=protocols), GATE)
    assert [(s.index, s.direction) for s in steps] == [(4, PROTOCOL_CHANGE)]
    assert "shots" in steps[0].reason


def test_points_without_a_figure_are_skipped_and_windows_need_figures():
    points = series("memory.weights_gib", [40.0, 40.0, 40.0, 50.0, 50.0])
    failed = Point(*[getattr(points[2], f) for f in ("suite", "cell_id", "metric")], "night-x", "glm5",
                   "2026-11-03T12:00:00Z", None, verdict="INFRA_ERROR")
    steps = detect_steps([*points[:3], failed, *points[3:]], GATE)
    assert [(s.index, s.point.run_id) for s in steps] == [(4, "night-03")]


def test_divergence_steps_use_the_paired_test_on_per_item_values():
    rng = random.Random(3)
    items = [f"s{i}" for i in range(64)]
    base = {item: 0.004 + rng.random() * 0.002 for item in items}
    healthy = [{item: v + rng.gauss(0, 1e-4) for item, v in base.items()} for _ in range(4)]
    broken = [{item: v * 3 + rng.gauss(0, 1e-4) for item, v in base.items()} for _ in range(3)]
    per_item = healthy + broken
    values = [sum(v.values()) / len(v) for v in per_item]
    gate = GateSettings(min_effect={"numerics.kld": 0.002})
    steps = detect_steps(series("numerics.kld", values, n=64, per_item=per_item), gate)
    assert [(s.index, s.direction, s.test) for s in steps] == [(4, "REGRESSED", "paired-t")]
    assert detect_steps(series("numerics.kld", values[:4], n=64, per_item=healthy), gate) == []


def test_the_band_is_where_the_gate_itself_turns():
    band = tolerance_band("memory.weights_gib", memory_entry(40.0), GATE)
    assert band.low == pytest.approx(38.8) and band.high == pytest.approx(41.2)  # weights: 3% of 40 beats 0.02 GiB
    assert (band.below, band.above) == ("IMPROVED", "REGRESSED")
    band = tolerance_band("memory.weights_gib", memory_entry(4.0, ceiling=4.2), GATE)
    assert band.high == pytest.approx(4.12) and band.low == pytest.approx(3.88)  # 3% of 4, under the ceiling
    band = tolerance_band("memory.weights_gib", memory_entry(4.0, ceiling=4.05), GATE)
    assert band.high == pytest.approx(4.05)  # the ceiling, where it is the nearer bound
    entry = accuracy_entry(value=0.94, n=1319)
    band = tolerance_band("gsm8k.accuracy", entry, GATE)
    assert (band.below, band.above) == ("REGRESSED", "IMPROVED")
    for edge, inside, outside in ((band.low, State.PASS, State.REGRESSED), (band.high, State.PASS, State.IMPROVED)):
        step = 1e-6 if outside is State.IMPROVED else -1e-6
        assert compare_metric("gsm8k.accuracy", MetricSample(edge - step, 1319, None, GSM8K_PROTOCOL), entry,
                              GATE).state is inside
        assert compare_metric("gsm8k.accuracy", MetricSample(edge + step, 1319, None, GSM8K_PROTOCOL), entry,
                              GATE).state is outside
    assert 0.90 < band.low < 0.93 and 0.95 < band.high < 0.98
    floor_only = accuracy_entry(value=None, n=None, floor=0.85)
    assert tolerance_band("gsm8k.accuracy", floor_only, GATE).low == pytest.approx(0.85)
    assert tolerance_band("gsm8k.accuracy", floor_only, GATE).high is None


def test_a_divergences_band_is_the_gates_minimum_effect_above_its_baseline():
    """A numerics plot shows where the gate can flag at all: a KLD of 0.00011 against 0 is inside the band."""
    from harness.baselines import BaselineEntry
    from harness.evals.numerics import MIN_KLD
    from tests.builders import PROVENANCE

    windows = {f"w{i}": 0.11 + 0.01 * (i % 3) for i in range(64)}
    entry = BaselineEntry("numerics.kld", PROVENANCE, value=0.12, n=64, values=windows)
    band = tolerance_band("numerics.kld", entry, GATE)
    assert band.high == pytest.approx(0.12 + MIN_KLD, abs=1e-9) and band.above == "REGRESSED"
    assert band.low == pytest.approx(0.12 - MIN_KLD, abs=1e-9) and band.below == "IMPROVED"
    at_zero = tolerance_band("numerics.kld", BaselineEntry("numerics.kld", PROVENANCE, value=0.0, n=64), GATE)
    assert at_zero.high == pytest.approx(MIN_KLD, abs=1e-9) and at_zero.low is None
    assert at_zero.high > 0.00011  # the fresh-install drift sits inside it
