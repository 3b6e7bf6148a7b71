"""`harness validate`: every suite and baseline file checked, and each baseline's cell and protocol against
its suite; the files evals keep beside the baselines (numerics references) read back."""

from __future__ import annotations

import argparse

from harness.commands.base import Command, add_dirs


def arguments(parser: argparse.ArgumentParser) -> None:
    add_dirs(parser, "suites", "baselines")


def run(args: argparse.Namespace) -> int:
    from harness import pipeline
    from harness.baselines import load_baselines
    from harness.errors import EXIT_OK, ConfigError
    from harness.evals.registry import EVALS
    from harness.matrix import expand
    from harness.suite import load_suite

    suites = {}
    cell_count = 0
    for path in sorted(args.suites_dir.glob("*.yaml")):
        suite = load_suite(path)
        cells = expand(suite)
        suites[suite.name] = {cell.id: cell for cell in cells}
        cell_count += len(cells)
        print(f"ok  {path}: {len(cells)} cells")
    if not suites:
        raise ConfigError(f"{args.suites_dir}: no suite files (*.yaml)")
    entry_count = 0
    baseline_files = sorted(args.baselines_dir.glob("*.yaml"))
    for path in baseline_files:
        baselines = load_baselines(path, must_exist=True)
        entry_count += pipeline.check_baselines(baselines, suites)
        print(f"ok  {path}: {sum(len(m) for m in baselines.cells.values())} entries over {len(baselines.cells)} cells")
    for evaluation in EVALS.values():  # the files evals keep beside the baselines (numerics references)
        for line in evaluation.check_stored(args.baselines_dir) if evaluation.check_stored else ():
            print(line)
    print(f"checked {len(suites)} suites ({cell_count} cells) and {len(baseline_files)} baseline files "
          f"({entry_count} entries): no problems")
    return EXIT_OK


COMMAND = Command("validate", "check every suite and baseline file", arguments, run)
