"""Baseline files: the shipped seeds, strict loading, compact outcomes, and promotion of a run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from harness import schema
from harness.baselines import Baselines, load_baselines, plan_update, save_baselines
from harness.compare import compare_results, exit_code
from harness.errors import ConfigError
from harness.results import RunResult
from harness.suite import GateSettings
from tests.builders import failed_result, gsm8k_result, outcomes
from tests.conftest import ROOT

GOLDEN = Path(__file__).parent / "golden"


def test_shipped_baselines_carry_the_reference_figures():
    glm5 = load_baselines(ROOT / "baselines" / "glm5.yaml", must_exist=True)
    assert glm5.entry("glm5/quark-mxfp4/mtp/tp8", "gsm8k.accuracy").value == 0.941
    kimi = load_baselines(ROOT / "baselines" / "kimi.yaml", must_exist=True)
    assert kimi.entry("kimi-k26/quark-mxfp4/none/tp4", "gsm8k.accuracy").value == 0.935
    assert kimi.entry("kimi-k25/quark-mxfp4/eagle3/tp8", "gpqa.accuracy").value == 0.87
    assert kimi.entry("kimi-k25/quark-mxfp4/eagle3/tp8", "spec.accept_length").value == 2.7
    online = load_baselines(ROOT / "baselines" / "online-mxfp4.yaml", must_exist=True)
    assert online.entry("qwen3-8b/quark_mxfp4/none/tp1", "memory.load_peak_gib").ceiling == 6.0
    assert online.entry("qwen3-30b-a3b/quark_mxfp4/none/tp1", "memory.load_peak_gib").ceiling == 17.0
    assert online.entry("qwen3-8b/quark_mxfp4/none/tp1", "gsm8k.accuracy").floor == 0.85
    assert online.entry("qwen3-30b-a3b/quark_mxfp4/none/tp1", "gsm8k.accuracy").floor == 0.89
    for baselines in (glm5, kimi, online):
        for metrics in baselines.cells.values():
            assert all(e.provenance.source == "imported" for e in metrics.values())


def write(tmp_path: Path, cells: dict) -> Path:
    path = tmp_path / "glm5.yaml"
    path.write_text(yaml.safe_dump({"kind": "harness.baselines", "schema_version": 1, "suite": "glm5",
                                    "cells": cells}))
    return path


PROV = {"source": "harness", "date": "2026-11-01"}
PROTO = {"eval": "gsm8k", "protocol": "sglang-fewshot"}


@pytest.mark.parametrize(("entry", "message"), [
    ({"gsm8k.acuracy": {"value": 0.9, "n": 10, "protocol": PROTO, "provenance": PROV}},
     "cells.c.gsm8k.acuracy: unknown key 'gsm8k.acuracy'; did you mean 'gsm8k.accuracy'?"),
    ({"gsm8k.accuracy": {"value": 0.9, "protocol": PROTO, "provenance": PROV}},
     "cells.c.gsm8k.accuracy.n: an accuracy value needs the number of questions"),
    ({"gsm8k.accuracy": {"value": 0.9, "n": 10, "provenance": PROV}},
     "cells.c.gsm8k.accuracy: missing required key 'protocol'"),
    ({"gsm8k.accuracy": {"value": 1.5, "n": 10, "protocol": PROTO, "provenance": PROV}},
     "cells.c.gsm8k.accuracy.value: expected a number <= 1.0, got 1.5"),
    ({"memory.weights_gib": {"floor": 3.0, "provenance": PROV}},
     "cells.c.memory.weights_gib.floor: memory metrics take a ceiling, not a floor"),
    ({"memory.weights_gib": {"provenance": PROV}},
     "cells.c.memory.weights_gib: an entry needs a value, a floor or a ceiling"),
    ({"memory.weights_gib": {"value": 3.0, "provenance": {"source": "guess", "date": "x"}}},
     "provenance.source: unknown provenance source 'guess'"),
    ({"memory.weights_gib": {"value": 3.0}}, "cells.c.memory.weights_gib: missing required key 'provenance'"),
])
def test_strict_baseline_errors(tmp_path, entry, message):
    with pytest.raises(ConfigError) as caught:
        load_baselines(write(tmp_path, {"c": entry}))
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "glm5.yaml"))


def test_outcomes_must_agree_with_value_and_n(tmp_path):
    (tmp_path / "o.json").write_text('{"kind": "harness.outcomes", "schema_version": 1, '
                                     '"ids": ["a", "b"], "correct": "10"}')
    ok = {"value": 0.5, "n": 2, "protocol": PROTO, "provenance": PROV, "outcomes": "o.json"}
    assert load_baselines(write(tmp_path, {"c": {"gsm8k.accuracy": ok}})).entry("c", "gsm8k.accuracy").outcomes == {
        "a": True, "b": False}
    with pytest.raises(ConfigError, match="holds 2 outcomes, but n is 3"):
        load_baselines(write(tmp_path, {"c": {"gsm8k.accuracy": {**ok, "n": 3}}}))
    with pytest.raises(ConfigError, match="gives accuracy 0.5000, value says 0.9"):
        load_baselines(write(tmp_path, {"c": {"gsm8k.accuracy": {**ok, "value": 0.9}}}))


def test_older_baseline_schema_is_refused_with_the_upgrade_command(tmp_path, monkeypatch):
    monkeypatch.setitem(schema.CURRENT_VERSIONS, "harness.baselines", 2)
    path = write(tmp_path, {})
    with pytest.raises(ConfigError, match=r"schema_version 1 is older than 2; run `harness upgrade .*glm5.yaml`"):
        load_baselines(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "glm5.yaml"
    path.write_text(yaml.safe_dump({"kind": "harness.baselines", "schema_version": 9, "suite": "glm5", "cells": {}}))
    with pytest.raises(ConfigError, match="schema_version 9 is newer than this harness reads"):
        load_baselines(path)


def run_of(*cells, verdicts=()):
    return RunResult(run_id="r1", suite="glm5", planned=tuple(c.cell_id for c in cells), cells=cells,
                     verdicts=tuple(verdicts), harness_version="0.1.0")


def test_update_writes_values_outcomes_and_provenance_golden(tmp_path):
    shutil.copy(ROOT / "baselines" / "glm5.yaml", tmp_path / "glm5.yaml")
    baselines = load_baselines(tmp_path / "glm5.yaml")
    result = gsm8k_result("glm5/quark-mxfp4/mtp/tp8", outcomes(9, 10), memory={"weights_gib": 48.25},
                          accept_length=2.75)
    updated, changes, refused = plan_update(baselines, run_of(result), today="2026-11-22")
    assert refused == []
    assert [c.describe() for c in changes] == [
        "glm5/quark-mxfp4/mtp/tp8 gsm8k.accuracy: 0.941 -> 0.9 (n=10)",
        "glm5/quark-mxfp4/mtp/tp8 memory.weights_gib: none -> 48.25",
        "glm5/quark-mxfp4/mtp/tp8 spec.accept_length: none -> 2.75",
    ]
    save_baselines(updated)
    written = (tmp_path / "glm5.yaml").read_text()
    outcome_file = tmp_path / "outcomes" / "glm5" / "glm5__quark-mxfp4__mtp__tp8.gsm8k.accuracy.json"
    golden = {"baseline-updated.yaml": written, "baseline-outcomes.json": outcome_file.read_text()}
    for name, text in golden.items():
        if os.environ.get("UPDATE_GOLDEN"):
            (GOLDEN / name).write_text(text)
        assert text == (GOLDEN / name).read_text(), name
    reloaded = load_baselines(tmp_path / "glm5.yaml")
    assert reloaded.entry("glm5/quark-mxfp4/mtp/tp8", "gsm8k.accuracy").outcomes == outcomes(9, 10)


def test_update_refuses_regressed_and_failed_cells_without_force(tmp_path):
    baselines = Baselines("glm5", tmp_path / "glm5.yaml", {})
    good = gsm8k_result("a/q/none/tp1", outcomes(9, 10))
    bad = gsm8k_result("b/q/none/tp1", outcomes(5, 10))
    crashed = failed_result("c/q/none/tp1", "oom")
    verdicts = [{"cell_id": "b/q/none/tp1", "state": "REGRESSED"}, {"cell_id": "a/q/none/tp1", "state": "PASS"}]
    _, changes, refused = plan_update(baselines, run_of(good, bad, crashed, verdicts=verdicts), today="d")
    assert {c.cell_id for c in changes} == {"a/q/none/tp1"}
    assert refused == ["b/q/none/tp1: REGRESSED (use --force to promote it anyway)",
                       "c/q/none/tp1: infra_error (use --force to promote it anyway)"]
    _, changes, refused = plan_update(baselines, run_of(good, bad, verdicts=verdicts), today="d", force=True)
    assert {c.cell_id for c in changes} == {"a/q/none/tp1", "b/q/none/tp1"} and refused == []


def test_update_keeps_floors_and_ceilings(tmp_path):
    shutil.copy(ROOT / "baselines" / "online-mxfp4.yaml", tmp_path / "online-mxfp4.yaml")
    baselines = load_baselines(tmp_path / "online-mxfp4.yaml")
    result = gsm8k_result("qwen3-8b/quark_mxfp4/none/tp1", outcomes(460, 500), memory={"load_peak_gib": 5.1})
    updated, _, _ = plan_update(baselines, run_of(result), today="2026-11-22")
    entry = updated.entry("qwen3-8b/quark_mxfp4/none/tp1", "memory.load_peak_gib")
    assert (entry.value, entry.ceiling, entry.provenance.source) == (5.1, 6.0, "harness")
    assert updated.entry("qwen3-8b/quark_mxfp4/none/tp1", "gsm8k.accuracy").floor == 0.85


def test_a_promoted_run_then_passes_against_itself(tmp_path):
    result = gsm8k_result("glm5/quark-mxfp4/mtp/tp8", outcomes(1200, 1319), memory={"weights_gib": 40.0})
    updated, _, _ = plan_update(Baselines("glm5", tmp_path / "glm5.yaml", {}), run_of(result), today="d")
    verdicts = compare_results([result.cell_id], {result.cell_id: result}, updated, GateSettings())
    assert exit_code(verdicts) == 0 and {v.state.value for v in verdicts} == {"PASS"}
