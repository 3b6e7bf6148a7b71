"""`harness compare RUN_A RUN_B`: run B gated against run A's figures (an A/B of two SGLang builds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command, finite_float, print_json


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--alpha", type=finite_float, help="significance level (default: run B's gate)")
    parser.add_argument("--json", action="store_true", help="print verdicts as JSON")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from harness.baselines import Baselines, entries_from_result
    from harness.compare import compare_results, exit_code
    from harness.history import open_run
    from harness.report import render_console
    from harness.suite import GateSettings

    run_a, run_b = open_run(args.run_a), open_run(args.run_b)
    cells = {}
    for result in run_a.cells:
        if result.status == "ok":
            cells[result.cell_id] = entries_from_result(run_a.suite, result, run_a, run_a.started_at or "")
    reference = Baselines(run_a.suite, args.run_a, cells)
    gate = GateSettings.from_dict(run_b.gate) if run_b.gate else GateSettings()
    if args.alpha is not None:
        gate = replace(gate, alpha=args.alpha)
    planned = list(dict.fromkeys([*run_b.planned, *(c.cell_id for c in run_a.cells)]))
    verdicts = compare_results(planned, {c.cell_id: c for c in run_b.cells}, reference, gate)
    code = exit_code(verdicts)
    if args.json:
        print_json({"a": run_a.run_id, "b": run_b.run_id, "exit_code": code,
                    "verdicts": [v.to_dict() for v in verdicts]})
    else:
        print(f"A = {run_a.run_id}, B = {run_b.run_id}")
        print(render_console(verdicts, code), end="")
    return code


COMMAND = Command("compare", "compare run B against run A (A/B of two builds)", arguments, run)
