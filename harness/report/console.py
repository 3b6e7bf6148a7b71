"""The table printed at the end of a run (plain text: CI logs have no colours to spare), then the reason of
every row that is not a plain pass, one line each (summary.md's "Why")."""

from __future__ import annotations

from harness.compare import Verdict
from harness.report.format import delta, figure, headline, mark, p_value


def render_console(verdicts: list[Verdict], exit_code: int | None) -> str:
    header = ("cell", "metric", "value", "baseline", "delta", "p", "verdict")
    rows = [header] + [
        (v.cell_id, v.metric, figure(v.metric, v.value), figure(v.metric, v.baseline), delta(v), p_value(v),
         mark(v))
        for v in verdicts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    explained = [v for v in verdicts if v.meaning.explained]
    if explained:  # why, on the terminal too: a REGRESSED or INFRA ERROR row with no reason leaves the user guessing
        lines += ["", "why:"]
        lines += [f"  {v.cell_id} {v.metric}: {mark(v)}: {' '.join(v.reason.split()) or '(no reason recorded)'}"
                  for v in explained]
    lines.append("")
    lines.append(headline(verdicts, exit_code))
    return "\n".join(lines) + "\n"
