"""How figures are printed, shared by every renderer so the tables agree."""

from __future__ import annotations

from harness.compare import Verdict
from harness.metrics import METRICS, MetricKind

STATE_MARKS = {
    "PASS": "pass", "REGRESSED": "REGRESSED", "IMPROVED": "improved", "NO_BASELINE": "no baseline",
    "NOT_COMPARABLE": "NOT COMPARABLE", "MISSING": "MISSING", "INFRA_ERROR": "INFRA ERROR",
    "CONFIG_ERROR": "CONFIG ERROR",
    "CAUGHT": "caught",  # a canary's expected REGRESSED: its planted defect was seen
}


def mark(verdict: Verdict) -> str:
    return STATE_MARKS["CAUGHT" if verdict.expected else verdict.state.value]


def figure(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    kind = METRICS[metric].kind if metric in METRICS else None
    if kind is MetricKind.ACCURACY:
        return f"{value:.4f}"
    if kind is MetricKind.MEMORY_GIB:
        return f"{value:.2f} GiB"
    if kind is MetricKind.DIVERGENCE:
        return f"{value:.5f}"  # KLD in nats per token: MXFP4 costs thousandths
    return f"{value:.2f}"


def delta(verdict: Verdict) -> str:
    if verdict.delta is None:
        return "-"
    kind = METRICS[verdict.metric].kind if verdict.metric in METRICS else None
    if kind is MetricKind.ACCURACY:
        return f"{verdict.delta * 100:+.2f} pt"
    if kind is MetricKind.MEMORY_GIB:
        return f"{verdict.delta:+.2f} GiB"
    if kind is MetricKind.DIVERGENCE:
        return f"{verdict.delta:+.5f}"
    return f"{verdict.delta:+.2f}"


def p_value(verdict: Verdict) -> str:
    if verdict.p_value is None:
        return "-"
    return f"{verdict.p_value:.2g}"


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for verdict in verdicts:
        key = "CAUGHT" if verdict.expected else verdict.state.value
        out[key] = out.get(key, 0) + 1
    return out


def headline(verdicts: list[Verdict], exit_code: int | None) -> str:
    tally = counts(verdicts)
    parts = [f"{count} {STATE_MARKS[state].lower()}" for state, count in sorted(tally.items())]
    return f"{', '.join(parts) or 'no verdicts'}; exit code {exit_code}"
