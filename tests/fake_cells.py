"""Cells that launch the SGLang test double through the real SGLang adapter."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.matrix import Cell, expand
from harness.suite import load_suite

FAKE_ENGINES = Path(__file__).parent / "fake_engines"


def fake_cell(tmp_path: Path, scenario: str = "ok", *, spec: str = "none", tp: int = 1, launch_s: float = 20,
              env: dict[str, str] | None = None, evals: dict | None = None) -> Cell:
    suite = {
        "schema_version": 1, "name": "fake", "engine": "sglang",
        "hardware": {"vendor": "amd", "gpus": 8},
        "timeouts": {"launch_s": launch_s, "eval_s": 60, "teardown_s": 6},
        "server": {"env": {"PYTHONPATH": str(FAKE_ENGINES), "FAKE_SGLANG_SCENARIO": scenario,
                           "FAKE_SGLANG_PIDFILE": str(tmp_path / "pids"), **(env or {})}},
        "evals": evals or {},
        "matrix": {"quant": ["quark-mxfp4"], "spec": [spec], "tp": [tp]},
        "models": [{"id": "fake", "fix": "glm5-mxfp4-mtp", "checkpoints": {"quark-mxfp4": "fake/model"}}],
    }
    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(suite))
    (cell,) = expand(load_suite(path))
    return cell


def recorded_pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []
