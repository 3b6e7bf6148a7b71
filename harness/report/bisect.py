"""The end of `harness bisect`: the first bad build, the evidence table (each measured build, its verdict and
figures, p-values), and the number of cells measured. Plain text, as the run's verdict table."""

from __future__ import annotations

from harness.bisection import Call, Conclusion, Evidence, Judgement, worst_case_steps
from harness.compare import Verdict
from harness.metrics import samples as metric_samples
from harness.report.format import delta, figure, p_value, plural


def render_bisect(evidence: Evidence, conclusion: Conclusion | None, stopped: str | None, exit_code: int) -> str:
    setup = evidence.setup
    driver = _driver(evidence)
    lines = [f"bisect of {setup.cell} (suite {setup.suite}) over {plural(len(setup.builds), 'build')}"
             + (f", driven by {driver.metric} ({'load failure' if driver.test == 'log' else driver.test})"
                if driver else "")]
    if conclusion is not None and conclusion.found:
        lines.append(f"first bad build: {setup.builds[conclusion.bad].label}")
        lines.append(f"last good build: {setup.builds[conclusion.good].label}")
    if stopped:
        lines.append(f"no first bad build: {stopped}")
    lines += ["", *_table(evidence), ""]
    measured = len(evidence.measured) + len(evidence.kept)
    lines.append(f"cells measured: {measured} ({len(evidence.measured)} now, {len(evidence.kept)} kept from an earlier "
                 f"invocation); at most {worst_case_steps(len(setup.builds))} for {len(setup.builds)} builds without "
                 f"skips")
    undecided = [i for i, j in sorted(evidence.judgements.items()) if j.undecided]
    if undecided:
        lines.append(f"undecided: {', '.join(setup.builds[i].label.split(' ')[0] for i in undecided)} (counted good: "
                     f"not regressed against the good build, yet not better than the bad one by the same gate)")
    lines.append(f"exit code {exit_code}")
    return "\n".join(lines) + "\n"


def _driver(evidence: Evidence) -> Verdict | None:
    judgement = _bad_end(evidence)
    return judgement.verdict if judgement is not None and judgement.call is Call.BAD else None


def _bad_end(evidence: Evidence) -> Judgement | None:
    return evidence.judgements.get(len(evidence.setup.builds) - 1)


def _table(evidence: Evidence) -> list[str]:
    bad_end = _bad_end(evidence)
    shown = bad_end.verdict if bad_end is not None else None  # the metric the table follows
    metric = shown.metric if shown is not None else "figure"
    header = ("#", "build", "verdict", metric, "delta vs good", "p vs good", "p vs bad", "note")
    rows: list[tuple[str, ...]] = [header]
    if evidence.good is not None:
        rows.append(_good_row(evidence, metric))
    last = len(evidence.setup.builds) - 1
    for index, judgement in sorted(evidence.judgements.items()):
        label = evidence.setup.builds[index].label
        rows.append(_row(index, label, judgement, end=index == last))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _good_row(evidence: Evidence, metric: str) -> tuple[str, ...]:
    assert evidence.good is not None
    sample = metric_samples(evidence.good).get(metric) if evidence.good.status == "ok" else None
    note = "" if evidence.good.status == "ok" else (evidence.good.error.cause if evidence.good.error else "")
    value = figure(metric, sample.value) if sample is not None else "-"
    return ("0", _short(evidence.setup.builds[0].label), "good end", value, "-", "-", "-", note)


def _row(index: int, label: str, judgement: Judgement, *, end: bool) -> tuple[str, ...]:
    verdict, against = judgement.verdict, judgement.against_bad
    call = judgement.call.value + (" (undecided)" if judgement.undecided else "") + (" (bad end)" if end else "")
    value = figure(verdict.metric, verdict.value) if verdict is not None else "-"
    change = delta(verdict) if verdict is not None else "-"
    # Why, where the figures do not say it: skipped, failed to load, a bad end that does not reproduce.
    quiet = verdict is not None and judgement.call is not Call.SKIP and not (end and judgement.call is Call.GOOD)
    note = "" if quiet else judgement.reason
    return (str(index), _short(label), call, value, change, p_value(verdict) if verdict else "-",
            p_value(against) if against else "-", _clip(note))


def _short(label: str, width: int = 48) -> str:
    return _clip(label, width)


def _clip(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."
