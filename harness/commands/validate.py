"""`harness validate`: every suite and baseline file checked, and each baseline's cell and protocol against
its suite; the files evals keep beside the baselines (numerics references) read back. Every problem of every
file is reported (one line each on stderr), then the count; exit 2 when there is any."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from harness.commands.base import Command, add_dirs, existing_dir
from harness.errors import print_error


def arguments(parser: argparse.ArgumentParser) -> None:
    add_dirs(parser, "suites", "baselines")


@dataclass
class _Tally:
    """What validate found: the problems by file, and the suites whose files have problems."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    broken_suites: list[str] = field(default_factory=list)

    def problem(self, file: Path | str, error: Exception) -> None:
        print_error(error)
        self.problems.setdefault(str(file), []).extend(str(error).splitlines())


def run(args: argparse.Namespace) -> int:
    from harness.errors import EXIT_OK, EXIT_USAGE
    from harness.report.format import plural

    tally = _Tally()
    suites, cell_count = _check_suites(existing_dir(args.suites_dir, "--suites-dir"), tally)
    baseline_files = sorted(existing_dir(args.baselines_dir, "--baselines-dir").glob("*.yaml"))
    entry_count = _check_baselines(baseline_files, suites, tally)
    _check_stored(args.baselines_dir, tally)
    checked = (f"checked {plural(len(suites) + len(tally.broken_suites), 'suite')} ({plural(cell_count, 'cell')}) "
               f"and {plural(len(baseline_files), 'baseline file')} ({plural(entry_count, 'entry', 'entries')})")
    if tally.problems:
        count = sum(len(lines) for lines in tally.problems.values())
        print(f"{checked}: {plural(count, 'problem')} in {plural(len(tally.problems), 'file')}")
        return EXIT_USAGE
    print(f"{checked}: no problems")
    return EXIT_OK


def _check_suites(suites_dir: Path, tally: _Tally) -> tuple[dict, int]:
    from harness.errors import ConfigError
    from harness.matrix import expand
    from harness.report.format import plural
    from harness.suite import load_suite

    suites: dict[str, dict] = {}
    cell_count = 0
    paths = sorted(suites_dir.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"{suites_dir}: no suite files (*.yaml) in this directory")
    for path in paths:
        try:
            cells = expand(load_suite(path))
        except ConfigError as error:
            tally.problem(path, error)
            tally.broken_suites.append(path.stem)
            continue
        suites[path.stem] = {cell.id: cell for cell in cells}
        cell_count += len(cells)
        print(f"ok  {path}: {plural(len(cells), 'cell')}")
    return suites, cell_count


def _check_baselines(paths: list[Path], suites: dict, tally: _Tally) -> int:
    from harness import pipeline
    from harness.baselines import load_baselines
    from harness.errors import ConfigError
    from harness.report.format import plural

    entry_count = 0
    for path in paths:
        try:
            baselines = load_baselines(path, must_exist=True)
        except ConfigError as error:
            tally.problem(path, error)
            continue
        if baselines.suite in tally.broken_suites:
            print(f"skip  {path}: not checked against suite {baselines.suite}, whose file has problems")
            continue
        count, problems = pipeline.baseline_problems(baselines, suites)
        entry_count += count
        for problem in problems:
            tally.problem(path, problem)
        if not problems:
            print(f"ok  {path}: {plural(sum(len(m) for m in baselines.cells.values()), 'entry', 'entries')} over "
                  f"{plural(len(baselines.cells), 'cell')}")
    return entry_count


def _check_stored(baselines_dir: Path, tally: _Tally) -> None:
    """The files evals keep beside the baselines (numerics references)."""
    from harness.evals.registry import EVALS

    for evaluation in EVALS.values():
        for line, problem in evaluation.check_stored(baselines_dir) if evaluation.check_stored else ():
            if problem is None:
                print(f"ok  {line}")
            else:
                tally.problem(line, problem)


COMMAND = Command("validate", "check every suite and baseline file (every problem of every file)", arguments, run)
