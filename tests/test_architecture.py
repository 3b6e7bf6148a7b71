"""The architecture docs/architecture.md's layout section documents, checked: the layers and their one-way imports, a
start-up path free of heavy imports, and a new eval as one module plus one registration line."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fake_cells import FAKE_ENGINES

ROOT = Path(__file__).resolve().parent.parent

# A whole eval, as a contributor would write it: protocol, data (generated), prompts, scorer, metric.
SUMS_EVAL = '''"""Sums: "What is a plus b?", answered after '####'."""

from __future__ import annotations

from typing import Any

from harness.evals.base import Prepared, ProtocolDefaults
from harness.evals.runner import Dataset, question_eval, question_protocol, sampling
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
    line = '    "numerics": "harness.evals.numerics:EVAL",\n'
    assert text.count(line) == 1
    registry.write_text(text.replace(line, line + '    "sums": "harness.evals.sums:EVAL",\n'))
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
        # The test double lives a second: its sampled RSS (a few samples, 8 to 64 MB) is no figure to gate.
        "gate": {"memory": {"memory.host_rss_peak_gib": {"rel": 1.0, "abs_gib": 1.0}}},
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


# The layers of docs/architecture.md's layout section, in order: a module imports only modules of its own layer or of
# layers before it, so that the run's data flows one way. Each entry is a module or a package prefix.
LAYERS = (
    ("foundation", ("harness", "harness.errors", "harness.strict", "harness.schema", "harness.secrets",
                    "harness.interrupts", "harness.stats", "harness.sequential", "harness.transport", "harness.machine", "harness.axes",
                    "harness.fixes", "harness.memory", "harness.metric_kinds", "harness.engine_specs", "harness.engine_flags",
                    "harness.kernels")),
    ("records", ("harness.results", "harness.local.problems")),
    ("evals", ("harness.evals",)),
    ("vocabulary", ("harness.protocols", "harness.metrics")),
    ("config", ("harness.suite",)),
    ("matrix", ("harness.matrix",)),
    ("baselines", ("harness.baselines",)),
    ("history", ("harness.history",)),
    ("preflight", ("harness.loading", "harness.preflight")),
    ("engines", ("harness.engines", "harness.local", "harness.rig")),
    ("cells", ("harness.schedule", "harness.cellrun", "harness.shard", "harness.rundir")),
    ("compare", ("harness.compare",)),
    ("steps", ("harness.steps", "harness.bisection")),
    ("report", ("harness.report",)),
    ("pipeline", ("harness.pipeline", "harness.slurm", "harness.bisect")),
    ("commands", ("harness.commands",)),
    ("cli", ("harness.cli", "harness.__main__")),
)
# Never imported on the CLI's start-up path (`import quark.torch` alone costs ~17 s).
HEAVY = ("numpy", "pandas", "torch", "quark", "aiohttp", "transformers", "lm_eval", "safetensors", "datasets",
         "huggingface_hub", "vllm", "sglang", "sgl_eval", "openai", "math_verify")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in (ROOT / "harness").rglob("*.py")}


def _layer(module: str) -> int:
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or (prefix != "harness" and module.startswith(prefix + "."))]
    assert matches, f"{module} stands in no layer of LAYERS (and of docs/architecture.md's layout section)"
    return max(matches)[1]  # the most specific prefix decides (harness.local.problems before harness.local)


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every harness module `module` imports: at the top, inside a function (lazily), the imports only a type
    checker runs (`if TYPE_CHECKING:`: a type named across layers ties them as surely), and the registry's evals
    (named as "module:attr" strings, imported when asked for)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert not child.level, f"{module}: a relative import (harness imports absolutely)"
                base = child.module or ""
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    if module == "harness.evals.registry":  # registered as "module:attr" (one line per eval)
        from harness.evals.registry import REGISTERED

        found.update(target.partition(":")[0] for target in REGISTERED.values())
    return {name for name in found if name in known and name != module}


def test_every_module_imports_only_modules_that_stand_before_it():
    modules = _modules()
    known = set(modules)
    backwards = [f"{module} ({LAYERS[_layer(module)][0]}) imports {imported} ({LAYERS[_layer(imported)][0]})"
                 for module, path in sorted(modules.items()) for imported in sorted(_imports(module, path, known))
                 if _layer(imported) > _layer(module)]
    assert backwards == []


def test_the_import_graph_has_no_cycle():
    """Within a layer too, data flows one way: no module reaches itself through its imports."""
    modules = _modules()
    graph = {module: _imports(module, path, set(modules)) for module, path in modules.items()}
    state: dict[str, int] = {}

    def cycle_from(module: str, trail: list[str]) -> list[str] | None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return [*trail, module, imported]
            if imported not in state and (found := cycle_from(imported, [*trail, module])):
                return found
        state[module] = 2
        return None

    cycles = [found for module in sorted(graph) if module not in state and (found := cycle_from(module, []))]
    assert cycles == []


def test_the_cli_start_up_path_imports_nothing_heavy(tmp_path):
    """`harness list` as a user runs it, timed by the interpreter: none of the heavy stacks is loaded."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", "list", "--suite", "local"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "harness.cli" in loaded and "harness.suite" in loaded
    heavy = sorted(name for name in loaded if name.split(".")[0] in HEAVY)
    assert heavy == []


def test_the_import_graph_counts_type_only_imports_and_the_registry_s_evals(tmp_path):
    """A type named across layers ties them as surely as a call: an import only a type checker runs counts."""
    module = tmp_path / "typed.py"
    module.write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from harness.matrix import Cell\n")
    known = set(_modules())
    assert _imports("harness.typed", module, known) == {"harness.matrix"}
    registry = _imports("harness.evals.registry", ROOT / "harness" / "evals" / "registry.py", known)
    assert {"harness.evals.gsm8k", "harness.evals.numerics"} <= registry


def test_the_cli_parser_imports_no_eval():
    """The registry knows its evals' names without importing them: `harness --help` and the parser of every
    command import the contract and the registry, and no eval."""
    probe = ("import sys; from harness.cli import build_parser; build_parser(); "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('harness.evals'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["harness.evals", "harness.evals.base", "harness.evals.registry"]


def test_a_registration_that_names_another_eval_is_refused(monkeypatch):
    from harness.evals import registry

    monkeypatch.setitem(registry.REGISTERED, "sums", "harness.evals.gsm8k:EVAL")
    with pytest.raises(TypeError, match="registered as eval 'sums' but is 'gsm8k'"):
        registry.get_eval("sums")
    assert "sums" in registry.EVALS and len(registry.EVALS) == 5


def _documented_layers() -> list[tuple[str, list[str]]]:
    """docs/architecture.md's layout table: (layer, the modules its row names, as module names)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Layout\n"):]
    end = section.find("\n## ", 1)  # the next section, or the page's end
    section = section if end < 0 else section[:end]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("layer", "---"):
            continue
        names = re.findall(r"`([a-z0-9_/]+)`", cells[1].split(" (")[0] + " " + " ".join(
            part.split(")")[-1] for part in cells[1].split(" (")[1:]))
        rows.append((cells[0], ["harness." + name.strip("/").replace("/", ".") for name in names]))
    return rows


def test_the_documented_layout_names_the_layers_the_test_checks():
    rows = _documented_layers()
    assert [layer for layer, _ in rows] == [name for name, _ in LAYERS]
    named = {module for _, modules in rows for module in modules}
    for index, (layer, modules) in enumerate(rows):
        assert modules, layer
        for module in modules:
            assert module in _modules() or any(m.startswith(module + ".") for m in _modules()), module
            assert _layer(module) == index, f"docs/architecture.md puts {module} in {layer}, the test in {LAYERS[_layer(module)][0]}"
    unnamed = [prefix for _, prefixes in LAYERS for prefix in prefixes if prefix not in ("harness", "harness.__main__")
               and not any(m == prefix or m.startswith(prefix + ".") for m in named)]
    assert unnamed == []
