"""Capabilities as objects: an engine is its adapter module plus one `EngineSpec` (harness.engine_specs); a gated
memory figure is one `GatedFigure` (harness.memory.GATED); every gated figure has its definition and every
definition is produced. The first two are proven on a copy of the package, as test_architecture proves an eval."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fake_cells import FAKE_ENGINES

ROOT = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).parent / "fixtures" / "logs"

# A whole engine, as a contributor would write it: a fork of SGLang with SGLang's command line and log.
TOYSERVE_MODULE = '''"""Toyserve: an SGLang fork that serves with SGLang's command line and prints SGLang's log."""

from __future__ import annotations

from harness.engines.sglang import SGLangEngine


class ToyServeEngine(SGLangEngine):
    name = "toyserve"


TOYSERVE = ToyServeEngine()
'''
TOYSERVE_SPEC = '''    EngineSpec(
        name="toyserve", adapter="harness.engines.toyserve:TOYSERVE", distribution="toyserve",
        managed_flags=frozenset({"--model-path", "--host", "--port", "--tp"}), max_tp=1, quants=frozenset({"bf16"}),
        log_parser="harness.engines.logs:parse_sglang_log",
    ),
'''
# A new gated memory figure the SGLang parser already reads: the draft (MTP) model's weights.
DRAFT_FIGURE = '''    GatedFigure("draft_weights_gib", "the draft (or MTP) model's weights on the device after load, max over ranks",
                rank_max("draft_weights_gib", own_allocations_only=True), Tolerance(rel=0.03, abs_gib=0.02)),
'''


def _copy_with(tmp_path: Path, module: tuple[str, str] | None, registry: str, anchor: str, entry: str) -> Path:
    """A copy of the package with one new module (path under harness/, text) and one registration: `entry`
    inserted before `anchor` in `registry`, and nothing else."""
    package = tmp_path / "pkg" / "harness"
    shutil.copytree(ROOT / "harness", package, ignore=shutil.ignore_patterns("__pycache__"))
    if module is not None:
        (package / module[0]).write_text(module[1])
    text = (package / registry).read_text()
    assert text.count(anchor) == 1, f"{registry} no longer has one {anchor!r}"
    (package / registry).write_text(text.replace(anchor, entry + anchor))
    return package.parent


def _suite(tmp_path: Path, engine: str, **overrides) -> Path:
    suites = tmp_path / "suites"
    suites.mkdir(exist_ok=True)
    doc = {
        "schema_version": 1, "name": "toy", "engine": engine, "hardware": {"vendor": "amd", "gpus": 2},
        "timeouts": {"launch_s": 30, "eval_s": 60, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES), "FAKE_SGLANG_LOAD_S": "0"}},
        # The test double lives a second: its sampled RSS (a few samples, 8 to 64 MB) is no figure to gate.
        "gate": {"memory": {"memory.host_rss_peak_gib": {"rel": 1.0, "abs_gib": 1.0}}},
        "matrix": {"quant": ["bf16"], "spec": ["none"], "tp": [1]},
        "models": [{"id": "toy", "checkpoints": {"bf16": "toy/model", "fp8": "toy/model-fp8"}}],
        **overrides,
    }
    (suites / "toy.yaml").write_text(yaml.safe_dump(doc))
    return suites


def _harness(pkg: Path, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(pkg), "HARNESS_GPU_BACKEND": "none"}

    def harness(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)
    return harness


def _run_twice(harness, tmp_path: Path, suites: Path) -> tuple[dict, list[dict], subprocess.CompletedProcess]:
    """A run, its promotion to baselines, and a second run gated against them: the first run's cell, the second
    run's verdicts and the promotion's output."""
    baselines, reports = tmp_path / "baselines", tmp_path / "reports"
    dirs = ["--suites-dir", str(suites), "--baselines-dir", str(baselines), "--reports-dir", str(reports)]
    first = harness("run", "--suite", "toy", "--run-id", "first", "--no-preflight", *dirs)
    assert first.returncode == 0, first.stderr
    cell = json.loads((reports / "first" / "results.json").read_text())["cells"][0]
    baselines.mkdir()
    promoted = harness("baseline", "update", "--from", str(reports / "first"), "--baselines-dir", str(baselines))
    assert promoted.returncode == 0, promoted.stderr
    second = harness("run", "--suite", "toy", "--run-id", "second", "--no-preflight", *dirs)
    assert second.returncode == 0, second.stderr
    return cell, json.loads((reports / "second" / "results.json").read_text())["verdicts"], promoted


def test_a_new_engine_is_one_module_and_one_registration(tmp_path):
    pkg = _copy_with(tmp_path, ("engines/toyserve.py", TOYSERVE_MODULE), "engine_specs.py", ")}\n\nENGINE_NAMES",
                     TOYSERVE_SPEC)
    harness = _harness(pkg, tmp_path)

    def refusal(**overrides) -> str:
        listed = harness("list", "--suite", "toy", "--suites-dir", str(_suite(tmp_path, "toyserve", **overrides)))
        assert listed.returncode == 2, listed.stdout
        return listed.stderr

    # The config, the matrix and the numerics eval read the spec.
    assert "'--tp' is set by the harness" in refusal(server={"args": ["--tp", "2"]})
    assert "the toyserve engine serves on at most 1 device: tp 2 is too large" in refusal(
        matrix={"quant": ["bf16"], "spec": ["none"], "tp": [1, 2]})
    assert "the toyserve engine serves quant bf16, not 'fp8'" in refusal(
        matrix={"quant": ["bf16", "fp8"], "spec": ["none"], "tp": [1]})
    assert "not supported by engine 'toyserve': no prompt-logprob API" in refusal(
        evals={"numerics": {"protocol": "topk-kld", "reference": "toy/bf16/none/tp1"}})
    assert "takes no memory fraction" in refusal(server={"memory_gib": 10})

    # The adapter is loaded by its spec's reference; its log is read by the parser the spec names.
    cell, verdicts, promoted = _run_twice(harness, tmp_path, _suite(tmp_path, "toyserve"))
    assert cell["cell"]["engine"] == "toyserve" and cell["memory"]["weights_gib"] == 40.0
    assert "memory.weights_gib: none -> 40" in promoted.stdout
    (weights,) = [v for v in verdicts if v["metric"] == "memory.weights_gib"]
    assert weights["state"] == "PASS" and weights["test"] == "tolerance"
    log = next((tmp_path / "reports" / "first").rglob("server.log"))
    printed = harness("memory", "--engine", "toyserve", str(log))
    assert printed.returncode == 0 and "weights_gib 40.000" in printed.stdout, printed.stderr


def test_a_new_gated_memory_figure_is_one_registration(tmp_path):
    pkg = _copy_with(tmp_path, None, "memory.py", '    GatedFigure("host_rss_peak_gib"', DRAFT_FIGURE)
    harness = _harness(pkg, tmp_path)
    suites = _suite(tmp_path, "sglang", matrix={"quant": ["bf16"], "spec": ["mtp"], "tp": [1]},
                    gate={"memory": {"memory.host_rss_peak_gib": {"rel": 1.0, "abs_gib": 1.0},
                                     "memory.draft_weights_gib": {"rel": 0.05, "abs_gib": 0.05}}})
    cell, verdicts, promoted = _run_twice(harness, tmp_path, suites)
    assert cell["memory"]["draft_weights_gib"] == 1.0  # the test double's MTP layer: "mem usage=1.00 GB"
    assert "memory.draft_weights_gib: none -> 1" in promoted.stdout
    (draft,) = [v for v in verdicts if v["metric"] == "memory.draft_weights_gib"]
    assert draft["state"] == "PASS" and draft["test"] == "tolerance" and "5% of 1.00 GiB" in draft["reason"]


# --- every gated figure has its definition, every definition is produced -----------------------------------

def _parsed_logs():
    from pkgutil import resolve_name

    from harness.engine_specs import ENGINES

    parsers = {spec.name: resolve_name(spec.log_parser) for spec in ENGINES.values() if spec.log_parser}
    for path in sorted(LOGS.rglob("*.log")):
        engine = "vllm" if path.name.startswith("vllm") else "sglang"
        yield path, parsers[engine](path.read_text(encoding="utf-8", errors="replace").splitlines())


def test_every_gated_memory_figure_is_defined_and_every_definition_is_produced():
    from harness.memory import GATED, MemoryReport
    from harness.metrics import METRICS

    produced: set[str] = set()
    for _, report in _parsed_logs():
        produced |= report.gated().keys()
    for sampler in ("nvml", "process-tree-rss"):  # the device sampler's two figures
        produced |= MemoryReport(engine="none", device_peak_gib={"0": 1.0}, sampler=sampler).gated().keys()
    defined = {figure.name for figure in GATED}
    assert produced == defined
    assert all(f"memory.{name}" in METRICS for name in produced)


def test_every_stored_figure_has_a_definition_and_every_eval_metric_its_eval():
    """The keys of the baselines in the repository all have a definition (a misspelt one would read 'no baseline'
    for ever); each eval's metrics are named after it (harness.metrics.samples looks them up so)."""
    from harness.evals.registry import EVALS
    from harness.metrics import METRICS

    stored = {metric for path in (ROOT / "baselines").glob("*.yaml")
              for cell in (yaml.safe_load(path.read_text()).get("cells") or {}).values() for metric in cell}
    assert stored and stored <= METRICS.keys()
    for name, evaluation in EVALS.items():
        assert all(metric.key.startswith(f"{name}.") for metric in evaluation.metrics)


def test_every_metric_kind_resolves_its_comparison_and_formats():
    from harness.compare import compare_accept_length, compare_accuracy, compare_divergence, compare_memory
    from harness.metric_kinds import KINDS, MetricKind

    assert [kind.comparison() for kind in KINDS] == [compare_accuracy, compare_memory, compare_accept_length,
                                                     compare_divergence]
    assert MetricKind.ACCURACY.delta(-0.0123) == "-1.23 pt" and MetricKind.MEMORY_GIB.figure(1.5) == "1.50 GiB"
    assert MetricKind.DIVERGENCE.figure(0.0012345) == "0.00123"


@pytest.mark.parametrize("engine", ["sglang", "vllm", "transformers"])
def test_each_engines_spec_names_an_adapter_of_its_own_name(engine):
    from harness.engines import get_engine

    assert get_engine(engine).name == engine and get_engine(engine).spec.name == engine
