"""`harness history` output: per cell and metric across runs, as a console table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

from harness.compare import CAUGHT, State
from harness.history import RECORD_COLUMNS, History
from harness.report.format import figure
from harness.steps import Trend


def render_text(history: History, found: list[Trend], *, every_run: bool = False) -> str:
    runs = history.runs
    lines = [f"{len(runs)} run(s)" + (f", {runs[0].run_id} .. {runs[-1].run_id}" if runs else "")
             + f"; {len(found)} series"]
    header = ("suite", "cell", "metric", "runs", "first", "latest", "min", "max", "latest verdict", "steps")
    rows = [header] + [_row(trend) for trend in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    table.insert(1, "  ".join("-" * w for w in widths))
    lines += table
    steps = [(trend, step) for trend in found for step in trend.steps]
    if steps:
        lines += ["", "steps (the first run after each change; each tested between windows of runs, not a run "
                      "against its baseline, whose own test is its verdict's):"]
        lines += [f"  {t.suite} {t.cell_id} {t.metric}: {s.describe()}  [{s.test}; {s.reason}]"
                  for t, s in steps]
    if every_run:
        for trend in found:
            lines += ["", f"{trend.suite} {trend.cell_id} {trend.metric}"]
            lines += [f"  {p.run_id}  {p.date or '-'}  {figure(trend.metric, p.value) if p.value is not None else '-'}"
                      f"  n={p.n if p.n is not None else '-'}  {_verdict(p.verdict, p.expected)}  "
                      f"{p.engine or '?'} {p.engine_version or '?'}{f' @ {p.engine_commit}' if p.engine_commit else ''}"
                      for p in trend.points]
    return "\n".join(lines) + "\n"


def _row(trend: Trend) -> tuple[str, ...]:
    values = [p.value for p in trend.measured]

    def shown(value: float | None) -> str:
        return figure(trend.metric, value) if value is not None and trend.metric != "cell" else "-"

    return (trend.suite, trend.cell_id, trend.metric, str(len(trend.points)),
            shown(values[0] if values else None), shown(trend.current.value),
            shown(min(values) if values else None), shown(max(values) if values else None),
            _verdict(trend.current.verdict, trend.current.expected), str(len(trend.steps)) if trend.steps else "-")


def _verdict(state: str | None, expected: bool) -> str:
    if state is None:
        return "(no verdict)"
    return (CAUGHT if expected else State(state).meaning).mark



def render_csv(found: list[Trend]) -> str:
    """One row per point (cell x metric x run), with `step`: the direction of a change starting at that run."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*RECORD_COLUMNS, "step"], lineterminator="\n")
    writer.writeheader()
    for trend in found:
        starts = {step.index: step.direction for step in trend.steps}
        for index, point in enumerate(trend.points):
            writer.writerow({**point.to_record(), "step": starts.get(index, "")})
    return out.getvalue()


def render_json(history: History, found: list[Trend]) -> str:
    body = {"runs": [{"run": r.run_id, "suite": r.suite, "date": r.started_at, "path": str(r.path)} for r in history.runs],
            "series": [{"suite": t.suite, "cell": t.cell_id, "metric": t.metric,
                        "points": [p.to_record() for p in t.points], "steps": [s.to_dict() for s in t.steps]}
                       for t in found]}
    return json.dumps(body, indent=2, allow_nan=False) + "\n"
