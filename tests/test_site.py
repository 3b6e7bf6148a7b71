"""`harness publish` and `harness history` over recorded runs: the pages, their links, escaping, goldens.

tests/fixtures/history/local-runs.tar.xz holds five real runs of this machine's tiny model (pack.py's trim):
local-1..3 and local-5 of `--suite local`, and local-4-defect of `--suite local-defects` (the planted scale
defect, gated against baselines/local.yaml). Regenerate the goldens with HARNESS_UPDATE_GOLDENS=1.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tarfile
from html.parser import HTMLParser
from pathlib import Path

from harness.cli import main
from harness.results import CellError
from tests.history_runs import night_result, write_run

ROOT = Path(__file__).parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "history" / "local-runs.tar.xz"
GOLDEN = Path(__file__).parent / "golden" / "history"
DEFECT_CELL = "tiny-qwen3/quark-mxfp4/none/tp1"


def unpack_local_runs(target: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return target


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("HARNESS_UPDATE_GOLDENS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def dirs() -> list[str]:
    return ["--suites-dir", str(ROOT / "suites"), "--baselines-dir", str(ROOT / "baselines")]


def test_history_of_the_local_runs_names_the_defect_run_as_the_step(tmp_path, capsys, monkeypatch):
    unpack_local_runs(tmp_path / "reports")
    monkeypatch.chdir(tmp_path)
    assert main(["history", "reports", "--suites-dir", str(ROOT / "suites")]) == 0
    out = capsys.readouterr().out
    assert (f"local {DEFECT_CELL} gsm8k.accuracy: REGRESSED from run local-4-defect (2026-11-29T15:13:52Z; "
            f"transformers 5.23.0)") in out
    assert out.count("REGRESSED from run") == 1  # the healthy cells and the memory series: no step
    check_golden("local-history.txt", out)
    assert main(["history", "reports", "--suites-dir", str(ROOT / "suites"), "--format", "csv"]) == 0
    check_golden("local-history.csv", capsys.readouterr().out)


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.sources: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("href"):
            self.links.append(values["href"])
        if values.get("src"):
            self.sources.append(values["src"])
        self.scripts += tag == "script" or any(name.startswith("on") for name in values)


def site_pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_publish_writes_an_offline_site_whose_links_all_resolve(tmp_path, capsys):
    reports = unpack_local_runs(tmp_path / "reports")
    site = tmp_path / "site"
    assert main(["publish", str(reports), "--out", str(site), *dirs()]) == 0
    assert "7 page(s) over 5 run(s)" in capsys.readouterr().out
    pages = site_pages(site)
    assert [p.relative_to(site).as_posix() for p in pages] == [
        "index.html", "runs/local-1/index.html", "runs/local-2/index.html", "runs/local-3/index.html",
        "runs/local-4-defect/index.html", "runs/local-5/index.html", "suite-local.html"]
    for page in pages:
        text = page.read_text()
        assert "Content-Security-Policy" in text and "default-src 'none'" in text
        parser = Links()
        parser.feed(text)
        assert parser.scripts == 0 and parser.sources == [], page
        for link in parser.links:
            assert not re.match(r"[a-z]+:", link), (page, link)  # nothing outside the site: no CDN, no network
            assert (page.parent / link.split("#")[0]).resolve().is_file(), (page, link)
    suite = (site / "suite-local.html").read_text()
    assert suite.count('<svg class="plot"') == 6 and suite.count('class="step"') == 1
    assert 'href="runs/local-4-defect/index.html"' in suite
    run = (site / "runs" / "local-4-defect" / "index.html").read_text()
    assert 'href="summary.md"' in run and 'href="tiny-qwen3__quark-mxfp4__none__tp1/server.log.txt"' in run
    log = site / "runs" / "local-4-defect" / "tiny-qwen3__quark-mxfp4__none__tp1" / "server.log.txt"
    assert log.read_text().startswith("# harness: ")
    # Published again into its own directory: rebuilt (here with the logs of the newest two runs only).
    assert main(["publish", str(reports), "--out", str(site), "--log-runs", "2", *dirs()]) == 0
    assert sorted(p.parts[-3] for p in site.rglob("server.log.txt")) == ["local-4-defect", *["local-5"] * 3]
    assert "only the newest runs' are copied here" in (site / "runs" / "local-1" / "index.html").read_text()
    # Into someone else's directory: refused, and nothing of it touched.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["publish", str(reports), "--out", str(tmp_path / "mine"), *dirs()]) == 2
    assert "a directory that publish did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def test_every_run_derived_string_is_escaped(tmp_path):
    evil_cell = "evil/<script>alert(0)</script>/none/tp1"
    good = night_result(188, day=1)
    broken = dataclasses.replace(
        night_result(188, cell_id=evil_cell, day=2, version=f"<b>{HOSTILE}</b>", commit=HOSTILE),
        status="infra_error", evals={}, memory={}, accept_length=None,
        error=CellError(f"oom{HOSTILE}", f"message {HOSTILE}", f"log line </pre>{HOSTILE}"))
    reports = tmp_path / "reports"
    write_run(reports, "r1", [good, night_result(188, cell_id=evil_cell, day=1)], day=1)
    run_dir = write_run(reports, "r2", [good, broken], day=2)
    cell_dir = run_dir / "cells" / "evil__<script>alert(0)<__script>__none__tp1"
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "server.log").write_text(f"{HOSTILE}\n")
    results = run_dir / "results.json"
    results.write_text(results.read_text().replace('"run_id": "r2"', '"run_id": "r2<script>alert(3)</script>"'))
    site = tmp_path / "site"
    assert main(["publish", str(reports), "--out", str(site), "--title", HOSTILE]) == 0
    pages = site_pages(site)
    assert len(pages) == 4
    for page in pages:
        text = page.read_text()
        parser = Links()
        parser.feed(text)
        assert parser.scripts == 0 and parser.sources == [], page
        assert "<script" not in text and "<img" not in text and "<b>" not in text, page
    suite = (site / "suite-glm5.html").read_text()
    assert "evil/&lt;script&gt;alert(0)&lt;/script&gt;/none/tp1" in suite
    run_pages = [p for p in pages if p.parent.parent.name == "runs"]
    assert sorted(p.parent.name for p in run_pages) == ["r1", "r2_script_alert_3___script_"]
    evil_run = (site / "runs" / "r2_script_alert_3___script_" / "index.html").read_text()
    assert "log line &lt;/pre&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in evil_run
    assert "oom&quot;&gt;&lt;img" in evil_run


def test_a_planted_defects_run_is_marked_and_never_stands_for_the_suite(tmp_path):
    """The planted defect run last (local-5 not yet run): the suite's latest run and its regressions are its own
    runs' (local-3: none), its state is coloured at a glance, the defect stays on the plot as a ring."""
    import shutil

    reports = unpack_local_runs(tmp_path / "reports")
    shutil.rmtree(reports / "local-5")
    site = tmp_path / "site"
    assert main(["publish", str(reports), "--out", str(site), *dirs()]) == 0
    index = (site / "index.html").read_text()
    row = next(line for line in index.splitlines() if 'href="suite-local.html"' in line)
    assert ">passing</span>" in row and 'href="runs/local-3/index.html"' in row and "local-4-defect" not in row
    assert re.search(r"<td>0</td><td>1</td></tr>$", row)  # regressed now 0; the step stays
    suite = (site / "suite-local.html").read_text()
    latest = suite[suite.index("<h2>Latest verdicts</h2>"):suite.index("<h2>Steps</h2>")]
    assert "local-4-defect" not in latest and "REGRESSED" not in latest
    assert suite.count('class="planted"') == 2  # the MXFP4 cell's accuracy and memory plots
    assert "planted defect: not the suite&#x27;s state" in suite
    # The step's p-value is its own test's, between windows of runs, and says so beside the run's own verdict.
    assert "mcnemar-exact between the runs before it and from it on, p=" in suite
    assert "windows: 3 runs (local-1 .. local-3" in suite


def test_a_step_label_keeps_the_whole_run_id_and_figures_never_wrap(tmp_path):
    from harness.report.svg import render_plot
    from harness.steps import Band, Step, Trend

    long_id = "20261205T093316Z-local-defects"
    points = [dataclasses.replace(p, run_id=f"{p.run_id[:6]}-{i}") for i, p in enumerate(_points(4))]
    points[3] = dataclasses.replace(points[3], run_id=long_id)
    step = Step(points[3], 3, "REGRESSED", 0.95, 0.77, 1e-10, "mcnemar-exact", "windows: ...")
    for index in (1, 3):  # a step near either edge of the plot
        trend = Trend("local", points[0].cell_id, points[0].metric, tuple(points), (dataclasses.replace(
            step, point=points[index], index=index),))
        svg = render_plot(trend, [(p.run_id, p.date) for p in points], baseline=0.95, band=Band(),
                          href=lambda p: "#", title=lambda p: "")
        assert f"step: {points[index].run_id}</text>" in svg
    reports = unpack_local_runs(tmp_path / "reports")
    site = tmp_path / "site"
    assert main(["publish", str(reports), "--out", str(site), *dirs()]) == 0
    run = (site / "runs" / "local-4-defect" / "index.html").read_text()
    assert '<td class="num">2.8e-10</td>' in run and "td.num { white-space: nowrap; }" in run


def _points(count: int):
    from harness.history import Point

    return [Point("local", DEFECT_CELL, "gsm8k.accuracy", f"night-{i:02d}", "local", f"2026-12-0{i + 1}T02:00:00Z",
                  0.95 if i < 3 else 0.77, n=200) for i in range(count)]
