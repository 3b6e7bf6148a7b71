"""Eval protocols: the parameters that make a figure mean something.

A baseline such as "GSM8K 0.941" is only comparable to a result measured with the same protocol. Each eval
states its own (harness.evals.registry); `protocol_of(config)` gives the canonical dict recorded in results
and baselines, and `protocol_differences` is the pure check the gate uses (facts: ../shared/reference/evals.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.evals.base import EvalConfig
from harness.evals.registry import EVALS

# Fields a baseline may leave unknown (null): figures imported from a PR rarely state them all.
PROTOCOL_KEYS = tuple(dict.fromkeys(key for e in EVALS.values() for key in e.protocol_keys))


def protocol_of(config: EvalConfig, *, dataset_sha256: str | None = None) -> dict[str, Any]:
    """The canonical protocol dict of an eval: what must match for two figures to compare."""
    return EVALS[config.name].protocol_of(config, dataset_sha256=dataset_sha256)


def protocol_differences(result: Mapping[str, Any], baseline: Mapping[str, Any], *,
                         result_may_be_unknown: bool = False) -> list[str]:
    """The protocol keys on which a result and a baseline disagree, as 'key: baseline -> result'.

    A key the baseline leaves null (unknown provenance) is not compared; a key the baseline
    states but the result lacks is a difference, unless `result_may_be_unknown` (a suite's declared
    protocol, whose generated dataset's hash is known only at run time).
    """
    differences = []
    for key in PROTOCOL_KEYS:
        expected = baseline.get(key)
        if expected is None:
            continue
        actual = result.get(key)
        if actual is None and result_may_be_unknown:
            continue
        if _normalise(actual) != _normalise(expected):
            differences.append(f"{key}: {expected!r} -> {actual!r}")
    return differences


def _normalise(value: Any) -> Any:
    # 0 and 0.0 are the same temperature; YAML and JSON disagree on which they write.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in sorted(value.items())}
    return value
