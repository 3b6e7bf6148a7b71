"""One series as an inline SVG plot, drawn at build time: no script, no external asset, nothing fetched.

Per run a marker coloured by its verdict (a link to the run's page, its facts in a tooltip), the line through
the measured figures, the baseline and its tolerance band, a dashed line before each detected step, and a
cross at the foot for a run where the cell failed or did not run. Every string is escaped (`esc`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.history import Point
from harness.report.format import figure
from harness.report.junit import xml_text
from harness.steps import PROTOCOL_CHANGE, Band, Trend

WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 28, 40

LINE = "#4c72b0"
BAND = "#dcefdc"
BASELINE = "#5a9a5a"
AXIS = "#555555"
GRID = "#e6e6e6"
VERDICT_COLOURS = {
    "PASS": "#2ca02c", "REGRESSED": "#d62728", "IMPROVED": "#1f77b4", "CAUGHT": "#ff7f0e",
    "NO_BASELINE": "#8c8c8c", "NOT_COMPARABLE": "#9467bd", "MISSING": "#9467bd", "INFRA_ERROR": "#9467bd",
    "CONFIG_ERROR": "#9467bd", None: "#8c8c8c",
}
STEP_LABEL_CHARS = 44  # at 10 px, ~250 px: half the plot's width, on the side of the step with room for it
STEP_COLOURS = {"REGRESSED": "#d62728", "IMPROVED": "#1f77b4", PROTOCOL_CHANGE: "#7f7f7f"}


def esc(value: object) -> str:
    """Text or an attribute value: HTML-escaped (quotes too), characters XML cannot hold replaced."""
    return html.escape(xml_text(str(value)) or "", quote=True)


def colour_of(verdict: str | None, expected: bool = False) -> str:
    """A stored verdict state's colour (a canary's expected REGRESSED: caught)."""
    return VERDICT_COLOURS["CAUGHT" if expected else verdict] if verdict in VERDICT_COLOURS else VERDICT_COLOURS[None]


@dataclass(frozen=True)
class Scale:
    low: float
    high: float
    count: int  # points along x

    def x(self, index: int) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (index + 0.5) / max(self.count, 1)

    def y(self, value: float) -> float:
        span = self.high - self.low
        return TOP + (HEIGHT - TOP - BOTTOM) * (self.high - value) / span


def render_plot(trend: Trend, columns: Sequence[tuple[str, str | None]], *, baseline: float | None, band: Band,
                href: Callable[[Point], str], title: Callable[[Point], str]) -> str:
    """The SVG element of one series. `columns`: (run id, date) of every run of the suite, oldest first, so
    that the plots of a page line up (a run without this cell is a gap); `href` and `title` give each
    point's link and tooltip text."""
    points = list(trend.points)
    column = {run_id: index for index, (run_id, _) in enumerate(columns)}
    scale = _scale(points, baseline, band, len(columns))
    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{esc(trend.metric)} over runs">',
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>']
    parts += _band(scale, band) + _axes(scale, trend.metric, columns)
    if baseline is not None:
        y = scale.y(baseline)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{BASELINE}" '
                     f'stroke-width="1.5" stroke-dasharray="6 3"/>')
    measured = [(p.run_id, p.value) for p in points if p.value is not None]
    if len(measured) > 1:
        path = " ".join(f"{scale.x(column[run_id]):.1f},{scale.y(value):.1f}" for run_id, value in measured)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    parts += _steps(scale, trend, column)
    for point in points:
        parts.append(_marker(scale, column[point.run_id], point, href(point), title(point)))
    parts.append("</svg>")
    return "\n".join(parts)


def _scale(points: list[Point], baseline: float | None, band: Band, count: int) -> Scale:
    values = [p.value for p in points if p.value is not None]
    values += [v for v in (baseline, band.low, band.high) if v is not None]
    if not values:
        return Scale(0.0, 1.0, count)
    low, high = min(values), max(values)
    span = high - low or max(abs(high) * 0.02, 1e-3)
    return Scale(low - 0.08 * span, high + 0.08 * span, count)


def _band(scale: Scale, band: Band) -> list[str]:
    low, high = band.low, band.high
    if low is None and high is None:
        return []
    top = TOP if high is None else scale.y(high)
    bottom = HEIGHT - BOTTOM if low is None else scale.y(low)
    return [f'<rect x="{LEFT}" y="{top:.1f}" width="{WIDTH - LEFT - RIGHT}" height="{max(bottom - top, 0):.1f}" '
            f'fill="{BAND}"/>']


def ticks(low: float, high: float, most: int = 5) -> list[float]:
    """Round tick values covering [low, high], at most about `most` of them."""
    raw = (high - low) / max(most - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step) + 1)]


def _axes(scale: Scale, metric: str, columns: Sequence[tuple[str, str | None]]) -> list[str]:
    parts = []
    for value in ticks(scale.low, scale.high):
        y = scale.y(value)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{AXIS}">'
                     f'{esc(_tick_label(metric, value))}</text>')
    bottom = HEIGHT - BOTTOM
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" stroke="{AXIS}"/>')
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}" stroke="{AXIS}"/>')
    every = max(1, math.ceil(len(columns) / 6))
    for index, (run_id, date) in enumerate(columns):
        if index % every == 0:
            parts.append(f'<text x="{scale.x(index):.1f}" y="{bottom + 15}" text-anchor="middle" font-size="10" '
                         f'fill="{AXIS}">{esc(_date_label(run_id, date, columns))}</text>')
    parts.append(f'<text x="{LEFT}" y="16" font-size="12" font-weight="bold" fill="#222222">{esc(metric)}</text>')
    return parts


def _tick_label(metric: str, value: float) -> str:
    return figure(metric, value).replace(" GiB", "") if metric != "cell" else f"{value:g}"


def _date_label(run_id: str, date: str | None, columns: Sequence[tuple[str, str | None]]) -> str:
    """The run's date (month-day), with the time of day when several runs share a day."""
    if not date:
        return run_id[:12]
    dates = [d for _, d in columns if d]
    return date[5:10] if len({d[:10] for d in dates}) == len(dates) else date[5:16].replace("T", " ")


def _steps(scale: Scale, trend: Trend, column: dict[str, int]) -> list[str]:
    parts = []
    for step in trend.steps:
        before = [p for p in trend.points[:step.index] if p.value is not None]
        here = column[step.point.run_id]
        x = (scale.x(column[before[-1].run_id]) + scale.x(here)) / 2 if before else scale.x(here)
        colour = STEP_COLOURS.get(step.direction, "#7f7f7f")
        arrow = {"REGRESSED": "\u25bc", "IMPROVED": "\u25b2"}.get(step.direction, "\u25c6")
        parts.append(f'<line class="step" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 4}" y2="{HEIGHT - BOTTOM}" '
                     f'stroke="{colour}" stroke-width="2" stroke-dasharray="4 3"/>')
        # The whole run id on the side with more room (a very long foreign id is shortened, whole in the tooltip).
        anchor = "end" if x > (LEFT + WIDTH - RIGHT) / 2 else "start"
        offset = -4 if anchor == "end" else 4
        run_id = step.point.run_id if len(step.point.run_id) <= STEP_LABEL_CHARS else \
            step.point.run_id[:STEP_LABEL_CHARS - 1] + "\u2026"
        parts.append(f'<text class="step-label" x="{x + offset:.1f}" y="{TOP + 8}" text-anchor="{anchor}" '
                     f'font-size="10" fill="{colour}"><title>{esc(step.describe())}</title>{arrow} step: '
                     f'{esc(run_id)}</text>')
    return parts


def _marker(scale: Scale, index: int, point: Point, href: str, title: str) -> str:
    colour = colour_of(point.verdict, point.expected)
    x = scale.x(index)
    if point.value is None:  # the cell failed or did not run: a cross at the foot of the plot
        y: float = HEIGHT - BOTTOM - 7
        shape = (f'<path d="M{x - 5:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 5:.1f} M{x - 5:.1f},{y + 5:.1f} '
                 f'L{x + 5:.1f},{y - 5:.1f}" stroke="{colour}" stroke-width="2.5"/>')
    else:
        column_width = (WIDTH - LEFT - RIGHT) / max(scale.count, 1)
        radius = min(4.5, max(2.0, column_width * 0.35))  # ninety nightlies still leave each its own marker
        if point.expected or point.verdict not in ("PASS", "NO_BASELINE", None):
            radius += 2  # what needs a look stands out
        y = scale.y(point.value)
        shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" stroke="#ffffff" stroke-width="1"/>'
        if point.planted:  # a planted defect: a white centre marks it (the legend says so); not the suite's state
            shape = shape.replace("<circle ", '<circle class="planted" ', 1) + \
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{max(radius / 2.5, 1.5):.1f}" fill="#ffffff"/>'
    return f'<a href="{esc(href)}"><title>{esc(title)}</title>{shape}</a>'
