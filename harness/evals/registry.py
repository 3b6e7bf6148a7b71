"""The evals harness knows: one module each, registered here by one line.

Everything that names evals reads this table: the suite schema (its `evals:` keys), `harness eval` and
`harness data fetch` (their choices), harness.protocols (the keys compared), harness.metrics (the gated
metrics), the gate's default minimum effects, and the cell runner.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TextIO

from harness.evals.base import Eval, EvalConfig, EvalContext
from harness.metric_kinds import MetricDef
from harness.results import EvalResult

# The registration: one line, one module per eval (harness/evals/<name>.py exposing EVAL), in report order.
REGISTERED = ("gsm8k", "gpqa", "aime", "numerics")


def _load(name: str) -> Eval:
    evaluation = importlib.import_module(f"harness.evals.{name}").EVAL
    if evaluation.name != name:
        raise ValueError(f"harness/evals/{name}.py registers an eval named {evaluation.name!r}")
    return evaluation


EVALS: dict[str, Eval] = {name: _load(name) for name in REGISTERED}

# Every eval's gated metrics, by key.
EVAL_METRICS: dict[str, MetricDef] = {m.key: m for e in EVALS.values() for m in e.metrics}


def get_eval(name: str) -> Eval:
    return EVALS[name]


def question_evals() -> dict[str, Eval]:
    """The evals that can run against any server that is up (`harness eval`, the lm-eval backend)."""
    return {name: e for name, e in EVALS.items() if e.prepare is not None}


def fetchable() -> dict[str, Eval]:
    """The evals whose data `harness data fetch` downloads."""
    return {name: e for name, e in EVALS.items() if e.fetch is not None}


def run_eval(config: EvalConfig, base_url: str, *, model: str, data_root: Path | None = None,
             stream: TextIO | None = None, context: EvalContext | None = None) -> EvalResult:
    """One eval against a server that is up; raises EvalInfraError when it could not be measured."""
    context = context or EvalContext(data_root=data_root, stream=stream)
    return EVALS[config.name].run(config, base_url, model, context)
