"""The published site in a real browser: headless Chromium (Debian's package; `.ci/run` installs it) loads every
page with nothing at error or warning level in its console or log, and the screenshots show the plots drawn:
the tolerance band, the line, the verdict markers, and at the planted defect a red marker below the others
behind a red step line. Skipped where no chromium is installed. HARNESS_SCREENSHOTS=DIR keeps the PNGs."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.report import svg
from tests.browser import Browser, find_chromium
from tests.helpers import repo_dirs as dirs
from tests.helpers import site_pages, unpack_local_runs

pytestmark = pytest.mark.browser

CHROMIUM = find_chromium()
PLOTS = ["bf16 accuracy", "bf16 memory", "mxfp4 accuracy", "mxfp4 memory", "fp8 accuracy", "fp8 memory"]


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def pixels(png: bytes) -> tuple[Counter, list[tuple[int, int, tuple[int, int, int]]], int, int]:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    raw = image.tobytes()
    data = [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]
    located = [(i % width, i // width, colour) for i, colour in enumerate(data)]
    return Counter(data), located, width, height


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium installed (.ci/run installs Debian's package)")
    with Browser(CHROMIUM, tmp_path_factory.mktemp("profile")) as running:
        yield running


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    reports = unpack_local_runs(root / "reports")
    assert main(["publish", str(reports), "--out", str(root / "site"), *dirs()]) == 0
    return root / "site"


def keep(name: str, png: bytes, fallback: Path) -> None:
    directory = Path(os.environ.get("HARNESS_SCREENSHOTS") or fallback)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(png)


def test_every_page_loads_without_console_errors(browser, site, tmp_path):
    for page in site_pages(site):
        visit = browser.visit(page.as_uri())
        assert visit.errors == [], (page, visit.errors)
        assert len(visit.page_png) > 1000
        keep(f"{page.relative_to(site).as_posix().replace('/', '_')}.png", visit.page_png, tmp_path)
    # The check itself can fail: a script the policy blocks, and one that logs an error, are both seen.
    bad = tmp_path / "bad.html"
    bad.write_text((site / "index.html").read_text().replace("</body>", "<script>console.error('x')</script></body>"))
    assert any("Content Security Policy" in error for error in browser.visit(bad.as_uri()).errors)
    plain = tmp_path / "plain.html"
    plain.write_text("<html><body><script>console.error('plain error')</script></body></html>")
    assert browser.visit(plain.as_uri()).errors == ["console.error: plain error"]


def test_the_plots_are_drawn_and_show_the_step_at_the_defect(browser, site, tmp_path):
    visit = browser.visit((site / "suite-local.html").as_uri(), "svg.plot")
    assert visit.errors == []
    keep("suite-local.png", visit.page_png, tmp_path)
    assert len(visit.element_pngs) == len(PLOTS)
    red, green = rgb(svg.VERDICT_COLOURS["REGRESSED"]), rgb(svg.VERDICT_COLOURS["PASS"])
    for name, png in zip(PLOTS, visit.element_pngs):
        keep(f"plot-{name.replace(' ', '-')}.png", png, tmp_path)
        counts, located, width, height = pixels(png)
        assert (width, height) == (svg.WIDTH, svg.HEIGHT), name
        assert counts[rgb(svg.BAND)] > 5000, name  # the tolerance band
        assert counts[rgb(svg.LINE)] > 100, name  # the line through the runs
        assert counts[green] > 4 * 20, name  # four or five healthy runs' markers
        if name != "mxfp4 accuracy":
            assert counts[red] == 0, name  # no regression, no step
            continue
        reds = [(x, y) for x, y, colour in located if colour == red and y > svg.TOP + 16]
        columns = Counter(x for x, _ in reds)
        step_columns = {x for x, count in columns.items() if count > 40}
        assert step_columns, "no step line drawn"
        marker = [(x, y) for x, y in reds if x not in step_columns]
        assert len(marker) > 50, "no REGRESSED marker drawn"
        greens = [y for _, y, colour in located if colour == green]
        below = sum(y for _, y in marker) / len(marker) - sum(greens) / len(greens)
        assert below > 60, f"the defect's marker is not below the healthy runs ({below:.0f} px)"
        assert min(step_columns) < min(x for x, _ in marker), "the step line is not before the defect run"
