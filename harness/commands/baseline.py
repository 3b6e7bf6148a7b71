"""`harness baseline update --from RUN`: a run's figures promoted to baselines, showing the diff (the only way
baselines change); the files its evals recorded (numerics references) stored beside them."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command, action, add_dirs


def arguments(parser: argparse.ArgumentParser) -> None:
    update = action(parser, "baseline_command", "update", "promote a run's figures to baselines (shows the diff)")
    update.add_argument("--from", dest="source", type=Path, required=True, help="reports/<run>")
    update.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    update.add_argument("--force", action="store_true", help="promote regressed or failed cells too")
    update.add_argument("--dry-run", action="store_true", help="show the diff; write nothing")
    add_dirs(update, "baselines")


def run(args: argparse.Namespace) -> int:
    import datetime as _dt

    from harness.baselines import baseline_path, load_baselines, plan_update, save_baselines
    from harness.errors import EXIT_OK
    from harness.history import open_run
    from harness.report.format import plural

    run_result = open_run(args.source)
    path = baseline_path(args.baselines_dir, run_result.suite)
    baselines = load_baselines(path)
    today = _dt.date.today().isoformat()
    updated, changes, refused = plan_update(baselines, run_result, cell_patterns=args.cell, force=args.force,
                                            today=today)
    stored, refused_references = _promote_files(args, run_result)
    for line in refused + refused_references:
        print(f"refused  {line}")
    for line in [change.describe() for change in changes] + stored:
        print(f"{'would ' if args.dry_run else ''}update  {line}")
    if stored and not changes:
        return EXIT_OK
    if not changes:
        print("nothing to update")
        return EXIT_OK if not refused else 1
    if args.dry_run:
        print(f"dry run: {path} unchanged")
        return EXIT_OK
    save_baselines(updated)
    print(f"wrote {path} ({plural(len(changes), 'entry', 'entries')} from run {run_result.run_id})")
    return EXIT_OK


def _promote_files(args: argparse.Namespace, run_result) -> tuple[list[str], list[str]]:
    """The files the run's cells recorded for their evals (numerics references), stored beside the baselines."""
    import fnmatch

    from harness.evals.registry import EVALS

    stored: list[str] = []
    refused: list[str] = []
    run_dir = args.source if args.source.is_dir() else args.source.parent
    for evaluation in EVALS.values():
        cells = [c for c in run_result.cells if evaluation.name in c.evals and c.status == "ok"
                 and (not args.cell or any(fnmatch.fnmatchcase(c.cell_id, p) for p in args.cell))]
        if evaluation.promote is None or not cells:
            continue
        done, kept = evaluation.promote(run_dir, cells, args.baselines_dir / "references" / run_result.suite,
                                        force=args.force, dry_run=args.dry_run)
        stored += done
        refused += kept
    return stored, refused


COMMAND = Command("baseline", "manage baselines", arguments, run)
