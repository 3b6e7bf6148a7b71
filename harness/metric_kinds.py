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
class Tolerance:
    """How far a memory figure may move from its baseline: `rel` of the baseline, at least `abs_gib`. The
    relative part decides at every realistic size; the floor only where a figure is so small that its own
    rounding (0.01 GiB in SGLang's log) or the allocator's granularity would otherwise trip it."""

    rel: float
    abs_gib: float

    def of(self, baseline: float) -> float:
        return max(self.abs_gib, self.rel * baseline)

    def describe(self, baseline: float) -> str:
        return f"{self.rel:.0%} of {baseline:.2f} GiB, at least {self.abs_gib:.2f} GiB"


@dataclass(frozen=True)
class MetricDef:
    key: str
    kind: MetricKind
    description: str
    # ACCURACY and DIVERGENCE: the smallest change that counts (asv's "factor AND test"), the gate's default.
    min_effect: float | None = None
    tolerance: Tolerance | None = None  # MEMORY_GIB: the gate's default tolerance
    # The figure follows the device it ran on (a pool sized as a fraction of the GPU's memory, the device's
    # peak): compared only with a baseline of the same GPU model and memory size and sizing flags.
    depends_on_hardware: bool = False
