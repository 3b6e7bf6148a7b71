"""How a figure is judged: the kinds of metric the gate knows, and a metric's definition.

Metric keys are `<family>.<name>`: `gsm8k.accuracy`, `memory.weights_gib`, `spec.accept_length`. Each eval
module defines its own (harness.evals.registry gathers them), the engine figures live in harness.metrics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MetricKind(enum.Enum):
    ACCURACY = "accuracy"  # a proportion over n questions; higher is better; statistical test
    MEMORY_GIB = "memory_gib"  # GiB, max over ranks; lower is better; tolerance + ceiling
    ACCEPT_LENGTH = "accept_length"  # mean accepted tokens per verify step; higher is better
    # A mean over items (sequences) of a distance from a reference; lower is better; paired test on the
    # per-item values AND a minimum effect, or above a hard ceiling (harness.evals.numerics).
    DIVERGENCE = "divergence"


@dataclass(frozen=True)
class MetricDef:
    key: str
    kind: MetricKind
    description: str
    # ACCURACY and DIVERGENCE: the smallest change that counts (asv's "factor AND test"), the gate's default.
    min_effect: float | None = None
