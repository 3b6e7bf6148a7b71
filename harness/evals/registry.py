"""The evals harness knows: one line each, "module:attr" of the eval's `Eval` record (harness.evals.base).

An eval's module is imported only when that eval is asked for (`EVALS[name]`, `get_eval`): `harness --help`,
`harness eval gsm8k` or a suite naming only GSM8K import no other eval. What needs every eval (harness.protocols'
keys, harness.metrics' gated metrics, `harness validate`'s stored files) iterates `EVALS.values()`, which loads
them all. Everything that names evals reads this table: the suite schema (its `evals:` keys), `harness eval`
and `harness data fetch` (their choices), harness.protocols, harness.metrics, the gate's default minimum
effects and the cell runner.
"""

from __future__ import annotations

import functools
import pkgutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from harness.evals.base import Eval, EvalConfig, EvalContext

if TYPE_CHECKING:
    from harness.metric_kinds import MetricDef
    from harness.results import EvalResult

# The registration: one line per eval, in report order.
REGISTERED = {
    "gsm8k": "harness.evals.gsm8k:EVAL",
    "gpqa": "harness.evals.gpqa:EVAL",
    "aime": "harness.evals.aime:EVAL",
    "numerics": "harness.evals.numerics:EVAL",
}


@functools.cache
def get_eval(name: str) -> Eval:
    """The registered eval `name`, its module imported on first use (KeyError for an unregistered name)."""
    evaluation = pkgutil.resolve_name(REGISTERED[name])
    if not isinstance(evaluation, Eval) or evaluation.name != name:
        raise TypeError(f"{REGISTERED[name]} is registered as eval '{name}' but is "
                        f"{getattr(evaluation, 'name', type(evaluation).__name__)!r}, not an Eval of that name")
    return evaluation


class _Registered(Mapping[str, Eval]):
    """The registered evals by name: the names are known without importing anything; an eval's module is
    imported when its value is first read."""

    def __getitem__(self, name: str) -> Eval:
        return get_eval(name)

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTERED)

    def __len__(self) -> int:
        return len(REGISTERED)

    def __contains__(self, name: object) -> bool:
        return name in REGISTERED


EVALS: Mapping[str, Eval] = _Registered()


def eval_metrics() -> dict[str, MetricDef]:
    """Every eval's gated metrics, by key (imports every eval)."""
    return {m.key: m for e in EVALS.values() for m in e.metrics}


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
