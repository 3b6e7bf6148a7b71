"""Helpers shared by test modules (one home: test modules never import one another).

The fake suite and its directories (the SGLang test double, tests/fake_engines), what a run wrote, the
check that no server survives, synthetic GPQA questions, and the recorded local runs of the site tests.
"""

from __future__ import annotations

import csv
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import yaml

from tests.fake_cells import FAKE_ENGINES, recorded_pids

ROOT = Path(__file__).resolve().parent.parent
HISTORY_FIXTURE = Path(__file__).parent / "fixtures" / "history" / "local-runs.tar.xz"
GPQA_FIELDS = ["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
               "Incorrect Answer 3"]


def assert_nothing_survives(tmp_path):
    pids = recorded_pids(tmp_path)
    assert pids, "the test double recorded no pids"
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    assert alive == []


def fake_suite(tmp_path: Path, scenario_by_spec: dict[str, str], launch_s: float = 30) -> Path:
    suites = tmp_path / "suites"
    suites.mkdir()
    suite = {
        "schema_version": 1, "name": "fake", "engine": "sglang",
        "hardware": {"vendor": "amd", "gpus": 8},
        "timeouts": {"launch_s": launch_s, "eval_s": 60, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES), "FAKE_SGLANG_PIDFILE": str(tmp_path / "pids")}},
        "matrix": {"quant": ["quark-mxfp4"], "spec": list(scenario_by_spec), "tp": [1]},
        "models": [{"id": "fake", "fix": "glm5-mxfp4-mtp", "checkpoints": {"quark-mxfp4": "fake/model"}}],
        "overrides": [{"match": {"spec": spec}, "server": {"env": {"FAKE_SGLANG_SCENARIO": scenario}}}
                      for spec, scenario in scenario_by_spec.items()],
    }
    (suites / "fake.yaml").write_text(yaml.safe_dump(suite))
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    (baselines / "fake.yaml").write_text(yaml.safe_dump({
        "kind": "harness.baselines", "schema_version": 1, "suite": "fake",
        "cells": {"fake/quark-mxfp4/none/tp1": {"memory.weights_gib": {
            "value": 40.0, "provenance": {"source": "harness", "date": "2026-11-22"}}}},
    }))
    return tmp_path


def dirs(root: Path) -> list[str]:
    return ["--suites-dir", str(root / "suites"), "--baselines-dir", str(root / "baselines"),
            "--reports-dir", str(root / "reports")]


def suite_with_eval(tmp_path: Path, *, latency_s: float = 0.0, questions: int = 20, eval_s: float = 60,
                    scenario: str = "ok", env: dict | None = None, specs: tuple[str, ...] = ("none",)) -> Path:
    """The fake suite, its cells running GSM8K (0-shot) against the SGLang test double."""
    root = fake_suite(tmp_path, {spec: scenario for spec in specs})
    path = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["timeouts"]["eval_s"] = eval_s
    suite["server"]["env"].update({"FAKE_SGLANG_LATENCY_S": str(latency_s), **(env or {})})
    suite["evals"] = {"gsm8k": {"protocol": "sglang-fewshot", "shots": 0, "questions": questions,
                                "concurrency": 2, "max_tokens": 16}}
    path.write_text(yaml.safe_dump(suite))
    (root / "baselines" / "fake.yaml").unlink()
    return root


def reports_written(run_dir: Path) -> dict:
    for name in ("results.json", "summary.md", "junit.xml"):
        assert (run_dir / name).exists(), name
    ET.parse(run_dir / "junit.xml")
    return json.loads((run_dir / "results.json").read_text())


def synthetic_csv(path, count=12):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=GPQA_FIELDS)
        writer.writeheader()
        for i in range(count):
            writer.writerow({"Record ID": f"rec{i:03d}", "Question": f"SECRET-QUESTION-TEXT-{i}: which one?",
                             "Correct Answer": f"CORRECT choice {i}", "Incorrect Answer 1": f"wrong a{i}",
                             "Incorrect Answer 2": f"wrong b{i}", "Incorrect Answer 3": f"wrong c{i}"})
    return path


def unpack_local_runs(target: Path) -> Path:
    with tarfile.open(HISTORY_FIXTURE) as tar:
        tar.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return target


def repo_dirs() -> list[str]:
    return ["--suites-dir", str(ROOT / "suites"), "--baselines-dir", str(ROOT / "baselines")]


def site_pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))
