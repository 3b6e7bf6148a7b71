"""Rendering: results and verdicts into the files people and CI read. No decisions are made here."""

from __future__ import annotations

from pathlib import Path

from harness import schema
from harness.compare import Verdict
from harness.report.console import render_console
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.results import RunResult, write_run


def write_reports(run_dir: Path, run: RunResult, verdicts: list[Verdict]) -> dict[str, Path]:
    """results.json, summary.md and junit.xml under reports/<run>/."""
    paths = {
        "results": write_run(run_dir, run),
        "summary": run_dir / "summary.md",
        "junit": run_dir / "junit.xml",
    }
    schema.write_atomic(paths["summary"], render_markdown(run, verdicts))
    schema.write_atomic(paths["junit"], render_junit(run, verdicts))
    return paths


__all__ = ["render_console", "render_junit", "render_markdown", "write_reports"]
