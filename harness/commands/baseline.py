"""`harness baseline update --from RUN`: a run's figures promoted to baselines, showing the diff (the only way
baselines change); the files its evals recorded (numerics references) stored beside them.
`harness baseline import-sgl-eval PRESET --suite S --cell C`: an sgl-eval preset's expected score imported as a
baseline (source `imported`, the preset named in its note; no outcomes, so the unpaired test applies)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command, action, add_dirs


def arguments(parser: argparse.ArgumentParser) -> None:
    update = action(parser, "baseline_command", "update", "promote a run's figures to baselines (shows the diff)")
    imported = action(parser, "baseline_command", "import-sgl-eval",
                      "import an sgl-eval preset's expected score as a baseline")
    imported.add_argument("preset", type=Path, help="an sgl-eval preset file (its benchmark gsm8k or gpqa)")
    imported.add_argument("--suite", required=True)
    imported.add_argument("--cell", required=True, help="the cell id the figure is a baseline of")
    imported.add_argument("--force", action="store_true", help="replace an existing entry")
    imported.add_argument("--dry-run", action="store_true", help="show the entry; write nothing")
    add_dirs(imported, "baselines")
    update.add_argument("--from", dest="source", type=Path, required=True, help="reports/<run>")
    update.add_argument("--cell", action="append", help="glob on cell ids (repeatable)")
    update.add_argument("--force", action="store_true", help="promote regressed or failed cells too")
    update.add_argument("--dry-run", action="store_true", help="show the diff; write nothing")
    add_dirs(update, "baselines")


def run(args: argparse.Namespace) -> int:
    if args.baseline_command == "import-sgl-eval":
        return import_sgl_eval(args)
    return update(args)


def import_sgl_eval(args: argparse.Namespace) -> int:
    """An sgl-eval preset's `expected.score` as an imported baseline of one cell, with its provenance."""
    import datetime as _dt

    import yaml

    from harness.baselines import BaselineEntry, Provenance, baseline_path, load_baselines, save_baselines
    from harness.errors import EXIT_OK, ConfigError
    from harness.evals.sgleval_backend import preset_figure

    figure = preset_figure(args.preset)
    path = baseline_path(args.baselines_dir, args.suite)
    baselines = load_baselines(path)
    if baselines.entry(args.cell, figure.metric) is not None and not args.force:
        raise ConfigError(f"{path}: {args.cell}: {figure.metric} has a baseline already (--force replaces it)")
    entry = BaselineEntry(metric=figure.metric, value=figure.value, n=figure.n, protocol=figure.protocol,
                          provenance=Provenance(source="imported", date=_dt.date.today().isoformat(),
                                                note=figure.note))
    print(yaml.safe_dump({args.cell: {figure.metric: entry.to_dict()}}, sort_keys=False).rstrip())
    if args.dry_run:
        print(f"dry run: {path} unchanged")
        return EXIT_OK
    baselines.cells.setdefault(args.cell, {})[figure.metric] = entry
    save_baselines(baselines)
    print(f"wrote {path}")
    return EXIT_OK


def update(args: argparse.Namespace) -> int:
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
