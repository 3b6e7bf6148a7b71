"""summary.md: fit for $GITHUB_STEP_SUMMARY, one row per cell and metric."""

from __future__ import annotations

from harness.compare import State, Verdict
from harness.report.format import delta, figure, headline, mark, p_value
from harness.results import RunResult

LOG_TAIL_LINES = 30


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(run: RunResult, verdicts: list[Verdict]) -> str:
    lines = [
        f"## harness: suite `{run.suite}`, run `{run.run_id}`",
        "",
        f"**{headline(verdicts, run.exit_code)}**",
        "",
        "| Cell | Metric | Value | Baseline | Delta | p | Verdict | Fix |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        shown = mark(v)
        if not v.expected and v.state in (State.REGRESSED, State.INFRA_ERROR, State.MISSING, State.NOT_COMPARABLE,
                                           State.CONFIG_ERROR):
            shown = f"**{shown}**"
        lines.append(
            f"| `{v.cell_id}` | {v.metric} | {figure(v.metric, v.value)} | {figure(v.metric, v.baseline)} "
            f"| {delta(v)} | {p_value(v)} | {shown} | {v.fix or '-'} |"
        )
    explained = [v for v in verdicts if v.state not in (State.PASS, State.NO_BASELINE)]
    if explained:
        lines += ["", "### Why", ""]
        lines += [f"- `{v.cell_id}` {v.metric}: {mark(v)}: {_cell(v.reason)}" for v in explained]
    gaps = [(c.cell_id, c.preflight["memory_vs_prediction"]) for c in run.cells
            if not c.preflight.get("memory_vs_prediction", {}).get("within_tolerance", True)]
    if gaps:
        lines += ["", "### Load memory against the preflight prediction", ""]
        lines += [f"- `{cell_id}`: measured {g['metric']} {g['measured_gib']:.2f} GiB, predicted weights "
                  f"{g['predicted_gib']:.2f} GiB: gap {g['gap_gib']:+.2f} GiB beyond the tolerance of "
                  f"{g['tolerance_gib']:.2f} GiB" for cell_id, g in gaps]
    failed = [c for c in run.cells if c.error is not None and c.error.cause != "preflight"]  # preflight: no log
    for result in failed:
        tail = "\n".join(result.error.log_tail.splitlines()[-LOG_TAIL_LINES:])
        lines += ["", f"<details><summary><code>{result.cell_id}</code>: {result.error.cause}</summary>", "",
                  "```text", tail or "(no log captured)", "```", "", "</details>"]
    return "\n".join(lines) + "\n"
