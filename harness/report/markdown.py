"""summary.md: fit for $GITHUB_STEP_SUMMARY, one row per cell and metric.

Every string that comes from a server or a file (reasons, log lines, causes, ids) is escaped for where it
lands: text is HTML-escaped and its Markdown punctuation backslash-escaped, code spans and fences are
delimited by a backtick run longer than any inside, and table cells never hold a newline or a bare '|'.
"""

from __future__ import annotations

import html
import re

from harness.compare import Verdict
from harness.report.format import delta, figure, headline, mark, p_value
from harness.results import RunResult

LOG_TAIL_LINES = 30


# Mid-line, only these can start markup (links need "[", images "![", autolinks "<", escaped by html.escape).
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")
_BACKTICKS = re.compile(r"`+")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def text(value: object) -> str:
    """Plain text: on one line, HTML escaped, Markdown punctuation escaped."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(_one_line(value), quote=False))


def code(value: object) -> str:
    """An inline code span that no backtick inside can close, with '|' escaped for table cells."""
    inner = _one_line(value).replace("|", "\\|")
    ticks = "`" * (1 + max((len(run) for run in _BACKTICKS.findall(inner)), default=0))
    padded = f" {inner} " if inner.startswith("`") or inner.endswith("`") else inner
    return f"{ticks}{padded}{ticks}"


def fenced(body: str, info: str = "text") -> list[str]:
    """A fenced block longer than any backtick run in `body`, so that no log line can end it."""
    fence = "`" * max(3, 1 + max((len(run) for run in _BACKTICKS.findall(body)), default=0))
    return [fence + info, body, fence]


def render_markdown(run: RunResult, verdicts: list[Verdict]) -> str:
    lines = [
        f"## harness: suite {code(run.suite)}, run {code(run.run_id)}",
        "",
        f"**{headline(verdicts, run.exit_code)}**",
        "",
        "| Cell | Metric | Value | Baseline | Delta | p | Verdict | Fix |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        shown = f"**{mark(v)}**" if v.meaning.problem else mark(v)
        lines.append(
            f"| {code(v.cell_id)} | {v.metric} | {figure(v.metric, v.value)} | {figure(v.metric, v.baseline)} "
            f"| {delta(v)} | {p_value(v)} | {shown} | {v.fix or '-'} |"
        )
    explained = [v for v in verdicts if v.meaning.explained]
    if explained:
        lines += ["", "### Why", ""]
        lines += [f"- {code(v.cell_id)} {v.metric}: {mark(v)}: {text(v.reason)}" for v in explained]
    gaps = [(c.cell_id, c.preflight["memory_vs_prediction"]) for c in run.cells
            if not c.preflight.get("memory_vs_prediction", {}).get("within_tolerance", True)]
    if gaps:
        lines += ["", "### Load memory against the preflight prediction", ""]
        lines += [f"- {code(cell_id)}: measured {g['metric']} {g['measured_gib']:.2f} GiB, predicted weights "
                  f"{g['predicted_gib']:.2f} GiB: gap {g['gap_gib']:+.2f} GiB beyond the tolerance of "
                  f"{g['tolerance_gib']:.2f} GiB" for cell_id, g in gaps]
    failed = [(c, c.error) for c in run.cells if c.error is not None and c.error.cause != "preflight"]  # no log
    for result, error in failed:
        tail = "\n".join(error.log_tail.splitlines()[-LOG_TAIL_LINES:])
        summary = f"<code>{html.escape(_one_line(result.cell_id))}</code>: {html.escape(_one_line(error.cause))}"
        lines += ["", f"<details><summary>{summary}</summary>", "", *fenced(tail or "(no log captured)"), "",
                  "</details>"]
    return "\n".join(lines) + "\n"
