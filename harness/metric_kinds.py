"""How a figure is judged: the kinds of metric the gate knows, each an object, and a metric's definition.

Metric keys are `<family>.<name>`: `gsm8k.accuracy`, `memory.weights_gib`, `spec.accept_length`. Each eval
module defines its own (harness.evals.registry gathers them), the memory figures are defined in harness.memory
(GATED), harness.metrics gathers them all. A kind carries its direction, bounds, comparison and formats; the
gate, the baselines, the bands and the reports read them and never ask which kind a metric is (docs/gate.md).
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class MetricKind:
    """A kind of figure: which way is better, what values it may take, how it is judged and how it is printed.
    The gate, the baselines, the bands and the reports read these fields; none tests which kind it is."""

    name: str  # as messages name it: "memory metrics take a ceiling"
    higher_is_better: bool  # a baseline entry bounds it by a floor (higher is better) or else by a ceiling
    bounds: tuple[float, float | None]  # the values a figure (and its baseline's value, floor, ceiling) may take
    # "module:attr" of its comparison in harness.compare, (metric, sample, entry, gate) -> Verdict: imported when
    # a figure is judged (the comparison needs the statistics and verdict types of a later layer).
    compare: str
    figure_format: str  # a figure as the reports print it
    delta_format: str  # a change from the baseline, after multiplying by delta_scale
    delta_scale: float = 1.0
    # Judged by a statistical test AND a minimum effect (the suite's gate.min_effect), under a protocol.
    statistical: bool = False
    # A proportion over n questions: per-question outcomes, paired by question; the sequential gate may stop it.
    counted: bool = False
    per_item: bool = False  # a mean over items, judged by a paired test on the per-item values

    ACCURACY: ClassVar[MetricKind]
    MEMORY_GIB: ClassVar[MetricKind]
    ACCEPT_LENGTH: ClassVar[MetricKind]
    DIVERGENCE: ClassVar[MetricKind]

    def comparison(self) -> Callable[..., Any]:
        return pkgutil.resolve_name(self.compare)

    def figure(self, value: float) -> str:
        return self.figure_format.format(value)

    def delta(self, value: float) -> str:
        return self.delta_format.format(value * self.delta_scale)


# A proportion over n questions; higher is better; statistical test (McNemar paired, else Fisher exact).
MetricKind.ACCURACY = MetricKind("accuracy", True, (0.0, 1.0), "harness.compare:compare_accuracy", "{:.4f}",
                                 "{:+.2f} pt", delta_scale=100.0, statistical=True, counted=True)
# GiB, max over ranks; lower is better; tolerance (per metric, harness.memory) + ceiling.
MetricKind.MEMORY_GIB = MetricKind("memory", False, (0.0, None), "harness.compare:compare_memory", "{:.2f} GiB",
                                   "{:+.2f} GiB")
# Mean accepted tokens per verify step; higher is better; the gate's absolute tolerance + floor.
MetricKind.ACCEPT_LENGTH = MetricKind("accept_length", True, (0.0, None), "harness.compare:compare_accept_length",
                                      "{:.2f}", "{:+.2f}")
# A mean over items (sequences) of a distance from a reference; lower is better; paired test on the per-item values
# AND a minimum effect, or above a hard ceiling (harness.evals.numerics). KLD in nats per token: MXFP4 costs
# thousandths, hence five decimals.
MetricKind.DIVERGENCE = MetricKind("divergence", False, (0.0, None), "harness.compare:compare_divergence",
                                   "{:.5f}", "{:+.5f}", statistical=True, per_item=True)
KINDS = (MetricKind.ACCURACY, MetricKind.MEMORY_GIB, MetricKind.ACCEPT_LENGTH, MetricKind.DIVERGENCE)


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
    # A statistical kind's smallest change that counts (asv's "factor AND test"), the gate's default.
    min_effect: float | None = None
    tolerance: Tolerance | None = None  # MEMORY_GIB: the gate's default tolerance
    # The figure follows the device it ran on (a pool sized as a fraction of the GPU's memory, the device's
    # peak): compared only with a baseline of the same GPU model and memory size and sizing flags.
    depends_on_hardware: bool = False
