"""`harness publish`: a static, offline HTML site over a history of runs.

index.html lists the suites; a page per suite holds the latest verdict of every cell and metric, the steps
found, and per cell one plot per metric over the runs (harness.report.svg: baseline, tolerance band, verdict
markers, steps); a page per run holds its verdict table (what summary.md says) with links to its summary.md
and each cell's server log, both copied into the site. Pages carry no script and load nothing from outside:
a Content-Security-Policy forbids both, so a string that escaped escaping still could not run. Every string
from a run (ids, reasons, log lines, engine versions) goes through `esc`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness import schema
from harness.baselines import Baselines, baseline_path, load_baselines
from harness.compare import CAUGHT, State, Verdict
from harness.errors import ConfigError
from harness.history import History, Point, RunRecord
from harness.metrics import METRICS
from harness.report.format import delta, figure, headline, p_value
from harness.report.svg import colour_of, esc, render_plot
from harness.results import cell_dir_name
from harness.steps import DEFAULT_WINDOW, Band, Step, Trend, tolerance_band, trends

MARKER = "harness-site.json"  # a directory holding it was written by publish and may be rewritten
MAX_LOG_BYTES = 1 << 20  # a server log's tail kept in the site; the run's own directory keeps all of it
DEFAULT_LOG_RUNS = 14  # two weeks of nightlies carry their logs; a site over months stays small
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
STYLE = """
body { font-family: sans-serif; margin: 1.5em 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; border: 1px solid #ddd; padding: 4px; }
figcaption { font-size: 12px; color: #444; max-width: 556px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 12px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
.muted { color: #777; }
td.num { white-space: nowrap; }
"""


@dataclass(frozen=True)
class Site:
    root: Path
    pages: tuple[Path, ...]


def publish(history: History, out: Path, *, baselines_dir: Path | None, window: int = DEFAULT_WINDOW,
            title: str = "harness", log_runs: int = DEFAULT_LOG_RUNS) -> Site:
    """Write the site under `out` (a new directory, or one an earlier publish wrote, which is replaced).
    The server logs of the newest `log_runs` runs are copied (their last MAX_LOG_BYTES each)."""
    _prepare(out)
    found = trends(history, window=window)
    run_pages = {record.run_id: f"runs/{_slug(record.run_id)}/index.html" for record in history.runs}
    with_logs = {record.run_id for record in history.runs[len(history.runs) - log_runs:]} if log_runs > 0 else set()
    pages = [_write_run(out, record, logs=record.run_id in with_logs) for record in history.runs]
    suites = sorted({t.suite for t in found} | {history.suite_of(r.suite or "?") for r in history.runs})
    for suite in suites:
        series = [t for t in found if t.suite == suite]
        baselines = _baselines(baselines_dir, suite)
        page = SuitePage(suite, series, baselines, history, run_pages, window)
        pages.append(_write(out / f"suite-{_slug(suite)}.html", page.render(title)))
    pages.append(_write(out / "index.html", _index(history, found, suites, run_pages, title)))
    schema.write_json(out / MARKER, {"kind": "harness.site", "runs": [r.run_id for r in history.runs]})
    return Site(out, tuple(pages))


def _prepare(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out}: not a directory")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise ConfigError(f"--out {out}: a directory that publish did not write; choose an empty or new one")
        shutil.rmtree(out)  # an earlier site: rebuilt whole, so no page of a run that is gone lingers
    out.mkdir(parents=True)


def _baselines(baselines_dir: Path | None, suite: str) -> Baselines | None:
    if baselines_dir is None:
        return None
    path = baseline_path(baselines_dir, suite)
    return load_baselines(path) if path.exists() else None


def _slug(name: str) -> str:
    """A file name for a run or suite id (ids from foreign files may hold anything)."""
    slug = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".") or "_"
    return slug[:120]


def _href(path: str) -> str:
    return quote(path, safe="/#")


def _write(path: Path, text: str) -> Path:
    schema.write_atomic(path, text)
    return path


def page(title: str, body: Iterable[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>{STYLE}</style>", "</head><body>", *body, "</body></html>", ""])


def badge(state: str | None, expected: bool = False) -> str:
    shown = CAUGHT.mark if expected else ("-" if state is None else _state(state).meaning.mark)
    colour = colour_of(state, expected)
    return f'<span class="badge" style="background: {colour}">{esc(shown)}</span>'


def _state(value: str) -> State:
    """A stored verdict state; a foreign file's unknown one reads as NOT_COMPARABLE."""
    try:
        return State(value)  # type: ignore[call-arg]  # an Enum looked up by value; mypy reads the members' __new__
    except ValueError:
        return State.NOT_COMPARABLE


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    """A table whose cells are already escaped markup (a cell that is its own <td ...> keeps its attributes)."""
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
            for row in rows]
    return out + ["</table>"]


def _num(text: str) -> str:
    """A figure's cell, never wrapped (a p-value of 2.8e-10 must not read as 2.8e- over 10)."""
    return f'<td class="num">{esc(text)}</td>'


def _link(href: str, text: str) -> str:
    return f'<a href="{esc(_href(href))}">{esc(text)}</a>'


def _tooltip(point: Point) -> str:
    value = "no figure" if point.value is None else figure(point.metric, point.value)
    n = f" (n={point.n})" if point.n else ""
    verdict = "no verdict" if point.verdict is None else ("caught" if point.expected else point.verdict)
    reason = f"\n{point.reason}" if point.reason else ""
    planted = "\nplanted defect: not the suite's state" if point.planted else ""
    return (f"{point.run_id} ({point.run_suite})\n{point.date or 'no date'}\n{value}{n}: {verdict}\n"
            f"{point.engine_label()}; {point.hardware or '?'}{reason}{planted}")


class SuitePage:
    """One suite: latest verdicts, steps, and per cell one plot per metric."""

    def __init__(self, suite: str, series: list[Trend], baselines: Baselines | None, history: History,
                 run_pages: dict[str, str], window: int):
        self.suite, self.series, self.baselines = suite, series, baselines
        self.history, self.run_pages, self.window = history, run_pages, window
        self.columns: list[tuple[str, str | None]] = []

    def render(self, title: str) -> str:
        runs = [r for r in self.history.runs if self.history.suite_of(r.suite or "?") == self.suite]
        self.columns = [(r.run_id, r.started_at) for r in runs]
        body = [f'<p><a href="index.html">{esc(title)}</a></p>', f"<h1>suite {esc(self.suite)}</h1>",
                f'<p class="muted">{len(runs)} run(s); steps: the gate\'s own test between the {self.window} '
                f"runs before and from each run; band: where the gate's verdict against the current "
                f"baseline turns REGRESSED or IMPROVED.</p>",
                _legend(), "<h2>Latest verdicts</h2>", *self._latest(), "<h2>Steps</h2>", *self._steps()]
        for cell_id in dict.fromkeys(t.cell_id for t in self.series):
            body += [f'<h2 id="{esc(_slug(cell_id))}">{esc(cell_id)}</h2>', '<div class="plots">']
            body += [self._figure(t) for t in self.series if t.cell_id == cell_id]
            body.append("</div>")
        body += ["<h2>Runs</h2>", *_runs_table(runs, self.run_pages)]
        return page(f"{title}: {self.suite}", body)

    def _latest(self) -> list[str]:
        rows = []
        for trend in self.series:
            point = trend.current  # a planted defect's run stays on the plots, never here
            rows.append([esc(trend.cell_id), esc(trend.metric),
                         esc(figure(trend.metric, point.value) if trend.metric != "cell" else "-"),
                         esc(figure(trend.metric, point.baseline) if trend.metric != "cell" else "-"),
                         badge(point.verdict, point.expected), _link(self.run_pages[point.run_id], point.run_id),
                         esc(point.reason)])
        return _table(("cell", "metric", "value", "baseline", "verdict", "run", "why"), rows)

    def _steps(self) -> list[str]:
        rows = [[esc(t.cell_id), esc(t.metric), esc(s.direction), _link(self.run_pages[s.point.run_id], s.point.run_id),
                 esc(s.point.date or "-"), esc(s.point.engine_label()),
                 esc("-" if s.delta is None else f"{figure(t.metric, s.before)} -> {figure(t.metric, s.after)}"),
                 esc(s.reason)] for t in self.series for s in t.steps]
        if not rows:
            return ['<p class="muted">none found</p>']
        return _table(("cell", "metric", "change", "first run after it", "date", "engine", "before -> after",
                       "why"), rows)

    def _figure(self, trend: Trend) -> str:
        entry = self.baselines.entry(trend.cell_id, trend.metric) if self.baselines else None
        latest_n = next((p.n for p in reversed(trend.points) if p.n), None)
        band = Band()
        if entry is not None and trend.metric != "cell":
            band = tolerance_band(trend.metric, entry, self.history.gate_for(self.suite), latest_n)
        baseline = entry.value if entry is not None else None
        svg = render_plot(trend, self.columns, baseline=baseline, band=band,
                          href=lambda p: self.run_pages[p.run_id], title=_tooltip)
        return f"<figure>{svg}<figcaption>{_caption(trend, baseline, band, latest_n, entry is not None)}</figcaption></figure>"


def _legend() -> str:
    states = [("PASS", False), ("REGRESSED", False), ("IMPROVED", False), ("REGRESSED", True), ("NO_BASELINE", False),
              ("INFRA_ERROR", False)]
    return ('<p class="muted">markers: ' + " ".join(badge(state, expected) for state, expected in states)
            + "; a white centre: a planted defect (a canary, or a run of a suite gated against this one's "
              "baselines), never the suite's state; a cross at the foot: the cell failed or did not run; "
              "dashed vertical line: a step; dashed "
              "horizontal line: the baseline; green band: within the gate's tolerance.</p>")


def _caption(trend: Trend, baseline: float | None, band: Band, n: int | None, has_entry: bool) -> str:
    if not has_entry:
        parts = ["no baseline"]
    else:
        parts = [f"baseline {figure(trend.metric, baseline)}" if baseline is not None else "a floor or ceiling only"]
        edges = [f"{side} {figure(trend.metric, edge)}: {_state(state).meaning.mark}"
                 for side, edge, state in (("below", band.low, band.below), ("above", band.high, band.above))
                 if edge is not None and state is not None]
        if edges:
            at_n = f" (at n={n})" if n and METRICS[trend.metric].kind.counted else ""
            parts.append("band: " + ", ".join(edges) + at_n)
    parts += [_step_line(step) for step in trend.steps]
    return esc(". ".join(parts))


def _step_line(step: Step) -> str:
    """A step in a caption: what its test compared (windows of runs), never to be read as a run's own verdict."""
    if step.p_value is None:
        return f"step {step.describe()}"
    return f"step {step.describe()} ({step.test} between the runs before it and from it on, p={step.p_value:.2g})"


def _runs_table(runs: list[RunRecord], run_pages: dict[str, str]) -> list[str]:
    rows = []
    for number, record in enumerate(runs, 1):
        result = record.result
        engines = sorted({f"{c.engine.get('name', '?')} {c.engine.get('version') or '?'}"
                          + (f" @ {c.engine['commit']}" if c.engine.get("commit") else "")
                          for c in record.cells.values() if c.engine})
        rows.append([str(number), _link(run_pages[record.run_id], record.run_id), esc(record.suite or "?"),
                     esc(record.started_at or "-"), esc("-" if result is None else result.exit_code),
                     esc(", ".join(engines) or "-")])
    return _table(("#", "run", "suite", "started", "exit", "engines"), rows)


def _index(history: History, found: list[Trend], suites: list[str], run_pages: dict[str, str], title: str) -> str:
    rows = []
    for suite in suites:
        runs = [r for r in history.runs if history.suite_of(r.suite or "?") == suite]
        # The suite's own runs stand for its state; a planted defect's (another suite gated as this one) never.
        latest = next((r for r in reversed(runs) if (r.suite or "?") == suite), None)
        series = [t for t in found if t.suite == suite]
        regressed = sum(1 for t in series if t.current.verdict == "REGRESSED" and not t.current.planted)
        code = None if latest is None or latest.result is None else latest.result.exit_code
        rows.append([status_badge(code, regressed), _link(f"suite-{_slug(suite)}.html", suite), str(len(runs)),
                     _link(run_pages[latest.run_id], latest.run_id) if latest else "-",
                     esc(latest.started_at if latest else "-"), esc("-" if code is None else code),
                     f'<b style="color: {colour_of("REGRESSED")}">{regressed}</b>' if regressed else "0",
                     str(sum(len(t.steps) for t in series))])
    planted = sorted({r.run_id for r in history.runs if history.suite_of(r.suite or "?") != (r.suite or "?")})
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="muted">{len(history.runs)} run(s), {len(found)} series; built by harness publish. A run '
            f"of a planted defect (a suite gated against another's baselines) or a canary stays on the plots, "
            f"marked, and never counts as a suite's latest run or its regressions"
            + (f" ({esc(', '.join(planted))})" if planted else "") + ".</p>",
            *_table(("state", "suite", "runs", "latest run", "started", "exit", "regressed now", "steps"), rows)]
    return page(title, body)


# What a suite's latest run says, at a glance: its exit code's meaning and colour.
_EXIT_STATES = {0: ("PASS", "passing"), 1: ("REGRESSED", "regressed"), 2: ("CONFIG_ERROR", "config error"),
                3: ("INFRA_ERROR", "infra error"), 4: ("INFRA_ERROR", "harness bug"), 130: ("NO_BASELINE", "interrupted")}


def status_badge(exit_code: int | None, regressed: int) -> str:
    no_verdict = ("NO_BASELINE", "no verdict")
    state, label = _EXIT_STATES.get(exit_code, no_verdict) if exit_code is not None else no_verdict
    if regressed and state == "PASS":
        state, label = "REGRESSED", "regressed"
    return f'<span class="badge" style="background: {colour_of(state)}">{esc(label)}</span>'


def _write_run(out: Path, record: RunRecord, *, logs: bool) -> Path:
    """The run's page (its verdict table, as summary.md has it), its summary.md and (`logs`) each cell's
    server log."""
    directory = out / "runs" / _slug(record.run_id)
    directory.mkdir(parents=True, exist_ok=True)
    links = []
    if (record.path / "summary.md").is_file():
        shutil.copyfile(record.path / "summary.md", directory / "summary.md")
        links.append(_link("summary.md", "summary.md"))
    copied = {}
    for cell_id in record.cells if logs else ():
        source = record.path / "cells" / cell_dir_name(cell_id) / "server.log"
        if source.is_file():
            copied[cell_id] = f"{_slug(cell_dir_name(cell_id))}/server.log.txt"
            _copy_tail(source, directory / copied[cell_id])
    if not logs:
        links.append("server logs: in the run's own directory (only the newest runs' are copied here)")
    result = record.result
    verdicts = [Verdict.from_dict(v) for v in result.verdicts] if result is not None else []
    body = ['<p><a href="../../index.html">index</a></p>', f"<h1>run {esc(record.run_id)}</h1>",
            f"<p>suite {esc(record.suite or '?')}; started {esc(record.started_at or '-')}; finished "
            f"{esc(record.finished_at or '-')}; {esc(headline(verdicts, result.exit_code) if result else 'never concluded')}"
            f"</p>", f"<p>{' | '.join(links) or 'no summary.md'}</p>"]
    rows = [[esc(v.cell_id), esc(v.metric), _num(figure(v.metric, v.value)), _num(figure(v.metric, v.baseline)),
             _num(delta(v)), _num(p_value(v)), badge(v.state.value, v.expected), esc(v.reason),
             _link(copied[v.cell_id], "server.log") if v.cell_id in copied else "-"] for v in verdicts]
    body += _table(("cell", "metric", "value", "baseline", "delta", "p", "verdict", "why", "log"), rows)
    for cell in record.cells.values():
        if cell.error is not None:
            body += [f"<h2>{esc(cell.cell_id)}: {esc(cell.error.cause)}</h2>", f"<p>{esc(cell.error.message)}</p>",
                     f"<pre>{esc(cell.error.log_tail)}</pre>"]
    return _write(directory / "index.html", page(f"run {record.run_id}", body))


def _copy_tail(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    with source.open("rb") as handle:
        if size > MAX_LOG_BYTES:
            handle.seek(size - MAX_LOG_BYTES)
        data = handle.read()
    note = (f"[harness publish: the last {MAX_LOG_BYTES} of {size} bytes; the run directory keeps all]\n".encode()
            if size > MAX_LOG_BYTES else b"")
    target.write_bytes(note + data)
