"""`harness fixes`: the guarded fixes, their rules, the cells that guard them and their latest verdicts."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from harness.commands.base import Command, add_dirs, existing_dir, print_json


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")
    add_dirs(parser, "suites", "reports")


def run(args: argparse.Namespace) -> int:
    from harness.errors import EXIT_OK
    from harness.fixes import FIXES
    from harness.loading.rules import RULE_FIXES
    from harness.matrix import expand
    from harness.suite import load_suite

    guarding: dict[str, list[str]] = {fix_id: [] for fix_id in FIXES}
    for path in sorted(existing_dir(args.suites_dir, "--suites-dir").glob("*.yaml")):
        for cell in expand(load_suite(path)):
            if cell.fix in guarding:
                guarding[cell.fix].append(f"{cell.suite}:{cell.id}")
    latest = latest_verdicts([args.reports_dir])
    rows = []
    for fix in FIXES.values():
        cells = [{"cell": name, **latest.get(name, {"state": "never run"})} for name in guarding[fix.id]]
        rows.append({"fix": fix.id, "kind": fix.kind, "pr": fix.pr, "model": fix.model,
                     "validated_with": fix.validated_with,
                     "rules": sorted(rule for rule, fix_id in RULE_FIXES.items() if fix_id == fix.id),
                     "cells": cells})
    if args.json:
        print_json(rows)
        return EXIT_OK
    print("\n".join(render(rows)))
    return EXIT_OK


def render(rows: list[dict]) -> list[str]:
    """The fixes as text: each cell's state in one column, however long the cell ids are."""
    width = max((len(cell["cell"]) for row in rows for cell in row["cells"]), default=0)
    lines = []
    for row in rows:
        lines.append(f"{row['fix']}{' [guard]' if row['kind'] == 'guard' else ''} ({row['pr']}): {row['model']}")
        lines.append(f"  validated with: {row['validated_with']}")
        lines.append(f"  rules: {', '.join(row['rules'])}")
        if not row["cells"]:
            lines.append("  (no suite cell guards it)")
        for cell in row["cells"]:
            where = f"  [{cell['run']}]" if "run" in cell else ""
            figures = f"  {cell['figures']}" if cell.get("figures") else ""
            lines.append(f"  {cell['cell']:<{width}}  {cell['state']}{where}{figures}")
    return lines


def latest_verdicts(roots: Iterable[Path]) -> dict[str, dict[str, str]]:
    """"suite:cell" -> the worst verdict of that cell in the newest concluded run that has it, and that run's id."""
    from harness.compare import State
    from harness.history import History

    runs = [record.result for record in History.load(roots).records if record.result is not None]
    latest: dict[str, dict[str, str]] = {}
    for run in sorted(runs, key=lambda r: r.finished_at or "", reverse=True):
        states: dict[str, list[State]] = {}
        figures: dict[str, list[str]] = {}
        for verdict in run.verdicts:
            states.setdefault(verdict["cell_id"], []).append(State(verdict["state"]))  # type: ignore[call-arg]  # an Enum looked up by value; mypy reads the members' __new__
            if verdict.get("value") is not None:
                figures.setdefault(verdict["cell_id"], []).append(f"{verdict['metric']} {verdict['value']:.4g}")
        for cell_id, found in states.items():
            latest.setdefault(f"{run.suite}:{cell_id}",
                              {"state": max(found, key=lambda s: s.meaning.severity).value, "run": run.run_id,
                               "figures": ", ".join(figures.get(cell_id, []))})
    return latest


COMMAND = Command("fixes", "the guarded fixes: their rules, the cells that guard them, and their latest results",
                  arguments, run)
