"""Kernel selection (issue 22, item 2): per cell and per run, recorded with every figure, never gated across."""

from __future__ import annotations

import dataclasses
import os

import pytest

from harness import pipeline
from harness.baselines import MeasuredOn, entries_from_result, load_baselines, measured_on, save_baselines
from harness.cli import main
from harness.compare import (
    COMPARABILITY_RULES,
    State,
    comparability,
    compare_cell,
    compare_metric,
    same_kernels,
)
from harness.engines.sglang import SGLANG
from harness.errors import ConfigError
from harness.kernels.selection import AITER_REFERENCE, AITER_REFERENCE_DIR, NATIVE, kernels_of
from harness.matrix import expand
from harness.metrics import samples
from harness.preflight import platform_limit
from harness.results import RunResult
from harness.suite import GateSettings, load_suite
from tests.builders import PROVENANCE, accuracy_entry, failed_result, gsm8k_result, memory_entry, outcomes
from tests.conftest import ROOT

SUITES = ["--suites-dir", str(ROOT / "suites")]


def nvidia_suite(base_suite: dict, **server) -> dict:
    base_suite["hardware"] = {"vendor": "nvidia", "gpus": 1}
    base_suite["matrix"] = {"quant": ["quark-mxfp4"], "spec": ["none"], "tp": [1]}
    if server:
        base_suite["server"] = server
    return base_suite


def test_a_suite_sets_kernels_for_its_cells_and_a_rule_for_some(base_suite, write_suite):
    suite = nvidia_suite(base_suite, kernels=AITER_REFERENCE)
    suite["models"].append({"id": "other", "checkpoints": {"quark-mxfp4": "x/y"}})
    suite["overrides"] = [{"match": {"model": "other"}, "server": {"kernels": NATIVE}}]
    cells = {cell.model: cell for cell in expand(load_suite(write_suite(suite)))}
    assert cells["glm5"].kernels == AITER_REFERENCE and cells["glm5"].resolved()["kernels"] == AITER_REFERENCE
    assert cells["other"].kernels == NATIVE


def test_unset_kernels_are_native(base_suite, write_suite):
    (cell,) = expand(load_suite(write_suite(nvidia_suite(base_suite))))
    assert cell.kernels == NATIVE and cell.resolved()["kernels"] == NATIVE


def test_an_unknown_kernels_value_names_the_key_and_the_nearest(base_suite, write_suite):
    path = write_suite(nvidia_suite(base_suite, kernels="aiter-refrence"))
    with pytest.raises(ConfigError) as caught:
        load_suite(path)
    assert str(caught.value).startswith(f"{path}: server.kernels: unknown kernels 'aiter-refrence'")
    assert "did you mean 'aiter-reference'?" in str(caught.value)


def test_reference_kernels_are_refused_for_an_engine_that_never_calls_aiter(base_suite, write_suite):
    suite = nvidia_suite(base_suite, kernels=AITER_REFERENCE)
    suite["engine"] = "vllm"
    path = write_suite(suite)
    with pytest.raises(ConfigError) as caught:
        load_suite(path)
    assert f"{path}: server.kernels: 'aiter-reference' stands in for aiter in sglang's MXFP4 path" in str(caught.value)


def test_the_reference_package_goes_first_on_the_servers_pythonpath(base_suite, write_suite, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/bundle/site")
    (cell,) = expand(load_suite(write_suite(nvidia_suite(base_suite, kernels=AITER_REFERENCE))))
    command = SGLANG.command(cell, python="python3", port=1, devices=[0])
    assert command.env["PYTHONPATH"] == os.pathsep.join([str(AITER_REFERENCE_DIR), "/bundle/site"])
    native = dataclasses.replace(cell, server=dataclasses.replace(cell.server, kernels=NATIVE))
    assert "PYTHONPATH" not in SGLANG.command(native, python="python3", port=1, devices=[0]).env


def test_a_cells_own_pythonpath_comes_after_the_reference_package(base_suite, write_suite):
    suite = nvidia_suite(base_suite, kernels=AITER_REFERENCE, env={"PYTHONPATH": "/mine"})
    (cell,) = expand(load_suite(write_suite(suite)))
    assert SGLANG.command(cell, python="p", port=1, devices=[0]).env["PYTHONPATH"] == \
        os.pathsep.join([str(AITER_REFERENCE_DIR), "/mine"])


def test_the_dry_run_shows_the_pythonpath_and_the_hook(capsys, tmp_path):
    code = main(["run", "--suite", "gpu-sglang", "--dry-run", "--cell", "tiny-qwen3/quark-mxfp4/*", "--kernels",
                 AITER_REFERENCE, *SUITES, "--reports-dir", str(tmp_path), "--baselines-dir", str(ROOT / "baselines")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"  env  PYTHONPATH={AITER_REFERENCE_DIR}" in out
    assert f"  kernels aiter-reference: hook {AITER_REFERENCE_DIR / 'sitecustomize.py'}" in out


def test_the_run_override_sets_every_cell_and_is_refused_for_other_engines():
    the_plan = pipeline.plan("gpu-sglang", suites_dir=ROOT / "suites", baselines_dir=ROOT / "baselines",
                             cell_patterns=None)
    assert {cell.kernels for cell in pipeline.with_kernels(the_plan, AITER_REFERENCE).cells} == {AITER_REFERENCE}
    local = pipeline.plan("local", suites_dir=ROOT / "suites", baselines_dir=ROOT / "baselines", cell_patterns=None)
    with pytest.raises(ConfigError, match="--kernels aiter-reference: suite local runs the transformers engine"):
        pipeline.with_kernels(local, AITER_REFERENCE)


def test_a_resumed_run_keeps_its_kernels_and_refuses_new_ones(tmp_path):
    from harness import rundir

    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    rundir.write_plan(run_dir, run_id="r1", suite="gpu-sglang", cells=["tiny-qwen3/quark-mxfp4/none/tp1"],
                      shard=None, kernels=AITER_REFERENCE)
    request = pipeline.RunRequest(resume=run_dir, suites_dir=ROOT / "suites", baselines_dir=ROOT / "baselines")
    the_plan, _, _ = pipeline._resumed_plan(request)
    assert [cell.kernels for cell in the_plan.cells] == [AITER_REFERENCE]
    with pytest.raises(ConfigError, match="drop --shard/--cell/--run-id/--kernels"):
        pipeline._resumed_plan(dataclasses.replace(request, kernels=NATIVE))


@pytest.mark.parametrize(("runtime", "installed", "force", "refused"), [
    ({"backend": "amd-smi", "rocm": "6.4.1"}, "0.1.7", False, True),
    ({"backend": "amd-smi", "rocm": "6.4.1"}, "0.1.7", True, False),
    ({"backend": "amd-smi", "rocm": "6.4.1"}, None, False, False),  # ROCm without aiter: nothing to shadow
    ({"backend": "nvml"}, "0.1.7", False, False),
])
def test_reference_kernels_on_rocm_with_aiter_are_refused_unless_forced(monkeypatch, runtime, installed, force,
                                                                       refused):
    import harness.engines.probe as probe

    asked = []
    monkeypatch.setattr(probe, "package_version", lambda python, name: asked.append(name) or (installed, None))
    the_plan = pipeline.with_kernels(pipeline.plan("gpu-sglang", suites_dir=ROOT / "suites",
                                                   baselines_dir=ROOT / "baselines", cell_patterns=None),
                                     AITER_REFERENCE)
    if refused:
        with pytest.raises(ConfigError, match=r"amd-aiter 0\.1\.7\) would shadow the real aiter.*"
                                              r"--force-reference-kernels"):
            pipeline.refuse_shadowing_aiter(the_plan.cells, runtime, "python3", force=force)
    else:
        pipeline.refuse_shadowing_aiter(the_plan.cells, runtime, "python3", force=force)
    assert asked == (["amd-aiter"] if "rocm" in runtime and not force else [])


def reference_result(cell_id="m/quark-mxfp4/none/tp1", kernels=AITER_REFERENCE, **figures):
    result = gsm8k_result(cell_id, outcomes(90, 100), memory={"weights_gib": 1.0}, **figures)
    return dataclasses.replace(result, cell={**result.cell, "kernels": kernels})


def test_a_reference_kernel_figure_is_not_compared_with_a_native_baseline():
    result = reference_result()
    baseline = {"gsm8k.accuracy": accuracy_entry(outcomes(99, 100)), "memory.weights_gib": memory_entry(0.5)}
    verdicts = {v.metric: v for v in compare_cell(result.cell_id, result, baseline, GateSettings())}
    for verdict in verdicts.values():
        assert verdict.state is State.NOT_COMPARABLE and verdict.test == "kernels"
        assert "measured with aiter-reference kernels, the baseline with native kernels" in verdict.reason


def test_nor_a_native_figure_with_a_reference_baseline():
    result = reference_result(kernels=NATIVE)
    entry = dataclasses.replace(accuracy_entry(outcomes(90, 100)),
                                provenance=dataclasses.replace(PROVENANCE, kernels=AITER_REFERENCE))
    [verdict] = [v for v in compare_cell(result.cell_id, result, {"gsm8k.accuracy": entry}, GateSettings())
                 if v.metric == "gsm8k.accuracy"]
    assert verdict.state is State.NOT_COMPARABLE and verdict.test == "kernels"
    assert "measured with native kernels" in verdict.reason


def test_the_kernels_rule_is_one_of_the_comparability_rules_and_no_hardware():
    """One home: the rule sits with the hardware rule; an entry's kernels come from its provenance, so two
    entries of one hardware and other kernels are still one hardware (per-hardware entries unchanged)."""
    assert same_kernels in COMPARABILITY_RULES
    native, reference = MeasuredOn(gpu="NVIDIA H200", gpu_memory_gib=140), MeasuredOn(
        gpu="NVIDIA H200", gpu_memory_gib=140, kernels=AITER_REFERENCE)
    assert native == reference and native.to_dict() == reference.to_dict()
    assert comparability("gsm8k.accuracy", native, reference).test == "kernels"
    assert comparability("gsm8k.accuracy", reference, reference) is None


def test_same_kernels_are_gated_as_usual_and_a_drop_regresses():
    sample = samples(reference_result())["gsm8k.accuracy"]
    entry = dataclasses.replace(accuracy_entry(outcomes(100, 100)),
                                provenance=dataclasses.replace(PROVENANCE, kernels=AITER_REFERENCE))
    assert compare_metric("gsm8k.accuracy", sample, entry, GateSettings()).state is State.REGRESSED


def test_a_result_recording_no_kernels_is_native():
    result = gsm8k_result("m/bf16/none/tp1", outcomes(90, 100))
    assert "kernels" not in result.cell and measured_on(result).kernels == NATIVE
    assert kernels_of(None) == NATIVE == kernels_of("something else")


def test_a_promoted_baseline_records_its_kernels_and_reads_them_back(tmp_path):
    result = reference_result()
    run = RunResult(run_id="r1", suite="demo", planned=(result.cell_id,), cells=(result,))
    entries = entries_from_result("demo", result, run, "2026-12-05")
    assert {e.provenance.kernels for e in entries.values()} == {AITER_REFERENCE}
    native = entries_from_result("demo", reference_result(kernels=NATIVE), run, "2026-12-05")
    assert {e.provenance.kernels for e in native.values()} == {None}  # nothing written: native, as imported ones
    from harness.baselines import Baselines

    path = tmp_path / "demo.yaml"
    save_baselines(Baselines("demo", path, {result.cell_id: entries}))
    assert "kernels: aiter-reference" in path.read_text()
    loaded = load_baselines(path)
    assert loaded.entry(result.cell_id, "gsm8k.accuracy").provenance.kernels == AITER_REFERENCE


def test_a_baseline_with_unknown_kernels_is_refused(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("kind: harness.baselines\nschema_version: 1\nsuite: demo\ncells:\n  a/b/none/tp1:\n"
                    "    memory.weights_gib:\n      value: 1.0\n      provenance: {source: harness, date: '2026-12-01', "
                    "kernels: reference}\n")
    with pytest.raises(ConfigError, match=r"cells\.a/b/none/tp1\.memory\.weights_gib\.provenance\.kernels: unknown "
                                          r"kernels 'reference'"):
        load_baselines(path)


def test_preflight_names_the_setting_where_sglang_will_miss_aiter(base_suite, write_suite):
    (cell,) = expand(load_suite(write_suite(nvidia_suite(base_suite))))
    note = platform_limit(cell)
    assert note.startswith("predicts aiter_missing at the first MXFP4 forward on nvidia")
    assert "server: {kernels: aiter-reference}" in note and "--kernels aiter-reference" in note
    with_reference = dataclasses.replace(cell, server=dataclasses.replace(cell.server, kernels=AITER_REFERENCE))
    assert platform_limit(with_reference) is None
    on_rocm = dataclasses.replace(cell, hardware=dataclasses.replace(cell.hardware, vendor="amd"))
    assert platform_limit(on_rocm) is None


def test_an_aiter_missing_cell_is_infra_with_the_remedy():
    result = failed_result("m/quark-mxfp4/none/tp1", "aiter_missing", "NameError: name 'dynamic_mxfp4_quant'")
    (verdict,) = compare_cell(result.cell_id, result, {}, GateSettings())
    assert verdict.state is State.INFRA_ERROR
    assert "harness run --kernels aiter-reference" in verdict.reason

