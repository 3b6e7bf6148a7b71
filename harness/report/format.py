"""How figures are printed, shared by every renderer so the tables agree."""

from __future__ import annotations

from harness.compare import Meaning, Verdict
from harness.metrics import METRICS


def mark(verdict: Verdict) -> str:
    """The verdict's label; an eval the sequential gate stopped says when: `REGRESSED (after 71 of 200)`."""
    if verdict.decided_after:
        return f"{verdict.meaning.mark} (after {verdict.decided_after[0]} of {verdict.decided_after[1]})"
    return verdict.meaning.mark


def figure(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return METRICS[metric].kind.figure(value) if metric in METRICS else f"{value:.2f}"


def delta(verdict: Verdict) -> str:
    if verdict.delta is None:
        return "-"
    return METRICS[verdict.metric].kind.delta(verdict.delta) if verdict.metric in METRICS else f"{verdict.delta:+.2f}"


def p_value(verdict: Verdict) -> str:
    if verdict.p_value is None:
        return "-"
    return f"{verdict.p_value:.2g}"


def counts(verdicts: list[Verdict]) -> dict[Meaning, int]:
    """How many verdicts mean each thing (a canary's caught REGRESSED counts apart)."""
    out: dict[Meaning, int] = {}
    for verdict in verdicts:
        out[verdict.meaning] = out.get(verdict.meaning, 0) + 1
    return out


def headline(verdicts: list[Verdict], exit_code: int | None) -> str:
    tally = sorted(counts(verdicts).items(), key=lambda item: item[0].key)
    parts = [f"{count} {meaning.mark.lower()}" for meaning, count in tally]
    return f"{', '.join(parts) or 'no verdicts'}; exit code {exit_code}"



def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 cell`, `2 cells`, `0 entries`."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"
