"""The bodies of the CLI's commands: each wires pipeline steps and prints; no logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path

from harness import schema
from harness.baselines import (
    Baselines,
    baseline_path,
    entries_from_result,
    load_baselines,
    plan_update,
    save_baselines,
)
from harness.compare import Verdict, compare_results, exit_code
from harness.engines import get_engine
from harness.errors import EXIT_INFRA, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, ConfigError, HarnessError
from harness.evals.base import EvalConfig
from harness.evals.registry import EVALS
from harness.fixes import FIXES
from harness.matrix import Cell, expand, select
from harness.pipeline import Plan, check_baselines, conclude, make_run_dir, new_run_id, plan, run_cells
from harness.report import render_console
from harness.results import STATUS_CONFIG_ERROR, CellError, CellResult, load_run, now_iso
from harness.strict import Where
from harness.suite import GateSettings, load_suite

DRY_RUN_PORT = 30000  # SGLang's default; a real launch takes a free port


def _describe_cell(cell: Cell) -> str:
    fix = FIXES.get(cell.fix) if cell.fix else None
    evals = ", ".join(_describe_eval(e) for e in cell.evals) or "no evals"
    canary = f"  [canary of {cell.baseline_id}: must regress]" if cell.baseline_id else ""
    return (f"{cell.id}  [{fix.id} {fix.pr}]  {evals}" if fix else f"{cell.id}  {evals}") + canary


def _describe_eval(config: EvalConfig) -> str:
    return EVALS[config.name].describe(config)


def cmd_list(args: argparse.Namespace) -> int:
    from harness.suite import find_suite

    suite = load_suite(find_suite(args.suite, args.suites_dir))
    for cell in select(expand(suite), args.cell):
        print(_describe_cell(cell))
    return EXIT_OK


def _resumed_plan(args: argparse.Namespace) -> tuple[Plan, str, Path]:
    """The plan of a run being resumed: the cells its plan.json names, as the suite defines them now."""
    from harness import rundir

    if args.shard or args.cell or args.run_id:
        raise ConfigError("--resume: the run directory's plan.json decides the cells; drop --shard/--cell/--run-id")
    recorded = rundir.read_plan(args.resume)
    the_plan = plan(recorded["suite"], suites_dir=args.suites_dir, baselines_dir=args.baselines_dir,
                    cell_patterns=None)
    by_id = {cell.id: cell for cell in the_plan.cells}
    unknown = [cell_id for cell_id in recorded["cells"] if cell_id not in by_id]
    if unknown:
        raise ConfigError(f"{args.resume / rundir.PLAN_FILE}: cells: {unknown[0]} is no longer a cell of suite "
                          f"{recorded['suite']} (the suite changed since the run started)")
    return (dataclasses.replace(the_plan, cells=[by_id[cell_id] for cell_id in recorded["cells"]]),
            recorded["run_id"], args.resume)


def _fresh_plan(args: argparse.Namespace) -> tuple[Plan, str, None]:
    """A new run's plan: the suite's selected cells, or one shard of them; its directory is made at launch."""
    the_plan = plan(args.suite, suites_dir=args.suites_dir, baselines_dir=args.baselines_dir, cell_patterns=args.cell)
    if args.shard:
        the_plan = _shard_of(the_plan, args.shard, args.durations_from)
    shard_suffix = f"-shard{args.shard.replace('/', 'of')}" if args.shard else ""
    return the_plan, checked_run_id(args.run_id) or new_run_id(the_plan.suite.name) + shard_suffix, None


def cmd_run(args: argparse.Namespace) -> int:
    """Run the plan's cells. Once the run directory exists every way out (the end, a signal, a bug in
    harness) tears the servers down and writes results.json, summary.md and junit.xml from what was measured."""
    from harness import interrupts, rundir
    from harness.engines.devices import discover

    the_plan, run_id, run_dir = _resumed_plan(args) if args.resume else _fresh_plan(args)
    if args.dry_run:
        _print_dry_run(the_plan.cells, api_key=args.api_key)
        return EXIT_OK
    _sweep_leftovers()
    gpus, runtime = discover()
    if args.share_gpus < 1:
        raise ConfigError(f"--share-gpus {args.share_gpus}: must be at least 1")
    host_gpus = _host_gpus(args.gpus, gpus, the_plan.suite) * args.share_gpus
    if run_dir is None:
        run_dir = make_run_dir(args.reports_dir, run_id)
        rundir.write_plan(run_dir, run_id=run_id, suite=the_plan.suite.name, cells=[c.id for c in the_plan.cells],
                          shard=args.shard)
    started_at = now_iso()
    machine: dict = {}
    interrupted, failure = False, None
    try:
        machine = _execute(args, the_plan, run_dir, host_gpus, (gpus, runtime))
    except KeyboardInterrupt:
        interrupted = True
    except Exception as error:  # noqa: BLE001 - a harness bug outside the cells: reported after the reports
        failure = error
    with interrupts.deferred():  # a signal now would only cut the reports short
        run = _conclude_with_what_exists(the_plan, run_id, run_dir, started_at, machine)
    print(f"reports: {run_dir}/ (results.json, summary.md, junit.xml)")
    if failure is not None:
        if isinstance(failure, HarnessError):
            raise failure
        from harness.cli import report_internal_error

        report_internal_error(failure)
        return EXIT_INTERNAL
    if interrupted or interrupts.received():
        print(f"harness: interrupted ({interrupts.received() or 'SIGINT'}); servers torn down, the cells measured "
              f"so far are saved (harness run --resume {run_dir})", file=sys.stderr)
        return EXIT_INTERRUPTED
    return run.exit_code if run is not None else EXIT_INTERNAL


def _execute(args: argparse.Namespace, the_plan: Plan, run_dir: Path, host_gpus: list[int],
             discovered: tuple[list[dict], dict]) -> dict:
    """Preflight and run the cells not finished yet; returns the machine description."""
    from harness import rundir
    from harness.cellrun import RunOptions, materialize, run_cell
    from harness.machine import machine_info

    references = args.baselines_dir / "references" / the_plan.suite.baselines
    options = RunOptions(python=args.python or sys.executable, machine=machine_info(*discovered),
                         evaluator=_evaluator(references), api_key=args.api_key,
                         exclusive_devices=args.share_gpus == 1)
    kept = {}
    if args.resume:
        kept = {cell_id: result for cell_id, result in rundir.read_results(run_dir).items()
                if rundir.finished(result, retry_failed=args.retry_failed)}
    to_run = [cell for cell in the_plan.cells if cell.id not in kept]
    print(f"harness: run {run_dir.name}: {len(to_run)} cell(s) of suite {the_plan.suite.name}"
          + (f" ({len(kept)} finished earlier, kept)" if kept else ""), file=sys.stderr)
    to_run = _with_engine_python(to_run, args.python, the_plan.suite)
    _prepare_local_checkpoints(to_run, options.python)
    # As they will run here: `vendor: auto` decided (a CPU machine's cells hold no GPUs), local paths resolved.
    to_run = [materialize(cell, create=False) for cell in to_run]
    checks = {} if args.no_preflight else _preflight_cells(
        to_run, _engine_versions(to_run, options.python, args.engine_version))
    unmeasurable = _unmeasurable(to_run, references)

    def checked_run_cell(cell: Cell, cell_run_dir: Path, devices: list[int]) -> CellResult:
        from harness.preflight import config_failure, with_preflight

        rundir.keep_previous_attempt(cell_run_dir, cell.id)  # a resumed cell's earlier attempt stays on disk
        check = checks.get(cell.id)
        if check is not None and check.failures:
            return config_failure(cell, check)  # never launched: the load would fail as the rule says
        if cell.id in unmeasurable:  # an eval has nothing to measure it against
            return not_launched(cell, unmeasurable[cell.id])
        result = run_cell(cell, cell_run_dir, options, devices=devices)
        return result if check is None else with_preflight(result, cell, check)

    _, interrupted = run_cells(to_run, run_dir, checked_run_cell, host_gpus, max_parallel=args.max_parallel,
                               progress=lambda line: print(f"harness: {line}", file=sys.stderr, flush=True))
    if interrupted:
        raise KeyboardInterrupt
    return options.machine


def _conclude_with_what_exists(the_plan: Plan, run_id: str, run_dir: Path, started_at: str, machine: dict):
    """Compare and report every cell result on disk (each was written as its cell finished); None when even
    that failed (the error is printed, results.json then lists the results without verdicts)."""
    from harness import rundir
    from harness.results import RunResult, write_run

    results: list[CellResult] = []
    try:
        order = {cell.id: index for index, cell in enumerate(the_plan.cells)}
        results = sorted((r for r in rundir.read_results(run_dir).values() if r.cell_id in order),
                         key=lambda r: order[r.cell_id])
        run, verdicts = conclude(the_plan, run_id, run_dir, results, started_at=started_at, machine=machine)
    except Exception as error:  # noqa: BLE001 - a bug in comparing or reporting: keep the results regardless
        from harness.cli import report_internal_error

        report_internal_error(error)
        write_run(run_dir, RunResult(run_id=run_id, suite=the_plan.suite.name,
                                     planned=tuple(c.id for c in the_plan.cells), cells=tuple(results),
                                     exit_code=EXIT_INTERNAL, machine=machine, started_at=started_at,
                                     finished_at=now_iso()))
        return None
    print(render_console(verdicts, run.exit_code), end="")
    return run


def _sweep_leftovers() -> None:
    """Servers a killed harness left on this host (harness.engines.leftovers) are torn down first."""
    from harness.engines import leftovers

    leftovers.sweep(say=lambda line: print(f"harness: leftovers: {line}", file=sys.stderr, flush=True))


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def checked_run_id(run_id: str | None) -> str | None:
    """--run-id names one directory under reports/: a plain name, never a path out of it."""
    if run_id is not None and (not RUN_ID.fullmatch(run_id) or ".." in run_id):
        raise ConfigError(f"--run-id {run_id!r}: expected a plain name (letters, digits, '.', '_', '+', '-'; "
                          f"at most 128; no '/' or '..'), as it names reports/<run-id>/")
    return run_id


def _host_gpus(flag: str | None, discovered: list[dict], suite) -> list[int]:
    """The GPUs cells are packed onto: --gpus, else the GPUs found, else the suite's declared host size
    (test doubles and dry machines: device ids only, nothing is allocated on them)."""
    if flag:
        try:
            return sorted({int(part) for part in flag.split(",") if part.strip()})
        except ValueError:
            raise ConfigError(f"--gpus {flag!r}: expected device indices such as 0,1,2,3") from None
    if discovered:
        return [gpu["index"] for gpu in discovered]
    return list(range(suite.hardware.gpus or 0)) if suite.hardware.vendor != "cpu" else []


def _shard_of(the_plan, shard: str, durations_from: Path | None):
    from harness.shard import parse_shard, past_durations, split

    index, count = parse_shard(shard)
    known = past_durations(durations_from, the_plan.suite.name) if durations_from else {}
    shards = split(the_plan.cells, count, known)
    return dataclasses.replace(the_plan, cells=list(shards[index - 1].cells))


def cmd_plan(args: argparse.Namespace) -> int:
    """The suite's cells split into shards for CI runners (--format github: a job matrix)."""
    from harness.shard import past_durations, split

    the_plan = plan(args.suite, suites_dir=args.suites_dir, baselines_dir=args.baselines_dir, cell_patterns=args.cell)
    known = past_durations(args.durations_from, the_plan.suite.name) if args.durations_from else {}
    shards = split(the_plan.cells, args.shards, known)
    if args.format == "github":
        # One line, for `echo "matrix=$(harness plan ...)" >> $GITHUB_OUTPUT` and fromJSON() in the workflow.
        include = [{"suite": the_plan.suite.name, "shard": s.label, "cells": len(s.cells),
                    "gpus": max((c.gpus for c in s.cells), default=0),
                    "estimated_gpu_hours": round(s.estimated_gpu_s / 3600, 2)} for s in shards if s.cells]
        print(json.dumps({"include": include}, separators=(",", ":")))
    elif args.format == "json":
        from harness.cli import print_json

        print_json([{"shard": s.label, "estimated_gpu_s": s.estimated_gpu_s, "cells": [c.id for c in s.cells]}
                    for s in shards])
    else:
        for s in shards:
            print(f"shard {s.label}: {len(s.cells)} cell(s), ~{s.estimated_gpu_s / 3600:.2f} GPU-hours")
            for cell in s.cells:
                print(f"  {cell.id}")
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    """Shard runs merged into one run, compared and reported as one."""
    from harness import rundir

    run_id = checked_run_id(args.run_id) or f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-merged"
    target = make_run_dir(args.reports_dir, run_id)
    suite, planned, results, machines = rundir.merge(args.runs, target)
    the_plan = plan(suite, suites_dir=args.suites_dir, baselines_dir=args.baselines_dir, cell_patterns=None)
    by_id = {cell.id: cell for cell in the_plan.cells}
    unknown = [cell_id for cell_id in planned if cell_id not in by_id]
    if unknown:
        raise ConfigError(f"{unknown[0]}: planned by a shard but not a cell of suite {suite} here")
    the_plan = dataclasses.replace(the_plan, cells=[by_id[cell_id] for cell_id in planned])
    rundir.write_plan(target, run_id=run_id, suite=suite, cells=planned, shard=None)
    started = min((r.started_at for r in results.values() if r.started_at), default=now_iso())
    run, verdicts = conclude(the_plan, run_id, target, [results[c] for c in planned if c in results],
                             started_at=started, machine={"shards": machines})
    print(render_console(verdicts, run.exit_code), end="")
    print(f"reports: {target}/ (results.json, summary.md, junit.xml), merged from {len(args.runs)} run(s)")
    return run.exit_code


def _engine_versions(cells: list[Cell], python: str, override: str | None) -> dict[str, str | None]:
    """The SGLang version the cells' Python has (`--engine-version` wins): the release whose loader the rules
    predict. Probed once (a Python start); other engines' cells get none (the newest known release)."""
    from harness.engines.probe import package_version

    if not any(cell.engine == "sglang" for cell in cells):
        return {}
    return {"sglang": override or package_version(python, get_engine("sglang").distribution)[0]}


def _preflight_cells(cells: list[Cell], versions: dict[str, str | None]) -> dict:
    """Each cell's preflight (headers only: seconds even for a trillion parameters), printed as it goes.
    The cells come materialized: their checkpoints are the directories that will be served."""
    from harness.preflight import check_cell

    checks = {}
    for cell in cells:
        check = checks[cell.id] = check_cell(cell, engine_version=versions.get(cell.engine))
        verdict = ("FAIL: " + check.message() if check.failures else
                   f"skipped ({check.unavailable})" if check.unavailable else "pass")
        print(f"harness: preflight {cell.id}: {verdict}", file=sys.stderr, flush=True)
    return checks


def _prepare_local_checkpoints(cells: list[Cell], python: str) -> None:
    """Export the `local:` checkpoints the cells need before any server starts (once; then cached)."""
    from harness.local import models

    for reference in dict.fromkeys(c.checkpoint.path for c in cells if models.is_local(c.checkpoint.path)):
        models.ensure(reference, python=python, log=lambda line: print(line, file=sys.stderr, flush=True))


def _evaluator(references: Path):
    """The evals that run against each ready server (numerics references from `references`)."""
    import functools

    from harness.cellrun import run_cell_evals

    return functools.partial(run_cell_evals, references=references)


def _with_engine_python(cells: list[Cell], flag: str | None, suite) -> list[Cell]:
    """--python, else the suite's `python:` (which must exist), for every server the cells start."""
    if flag:
        return [dataclasses.replace(cell, python=flag) for cell in cells]
    if suite.python and cells and not Path(suite.python).exists():
        raise Where(str(suite.path)).key("python").error(
            f"{suite.python} does not exist (relative paths start in the working directory; `make vllm-env` "
            f"makes .venv-vllm)")
    return cells


def _unmeasurable(cells: list[Cell], references: Path) -> dict[str, CellError]:
    """Cells an eval cannot measure (numerics: no stored reference to measure against): not launched."""
    problems = {}
    for cell in cells:
        for name in dict.fromkeys(config.name for config in cell.evals):
            hook = EVALS[name].unmeasurable
            problem = hook(cell, references) if hook is not None else None
            if problem is not None and cell.id not in problems:
                problems[cell.id] = problem
                print(f"harness: {cell.id}: not launched: {problem.message}", file=sys.stderr, flush=True)
    return problems


def not_launched(cell: Cell, error: CellError) -> CellResult:
    """The result of a cell kept from launching by a config problem (CONFIG_ERROR)."""
    stamp = now_iso()
    return CellResult(cell_id=cell.id, suite=cell.suite, status=STATUS_CONFIG_ERROR, cell=cell.resolved(),
                      error=error, started_at=stamp, finished_at=stamp)


def _print_dry_run(cells: list[Cell], *, api_key: str | None = None) -> None:
    import shlex

    from harness import secrets
    from harness.cellrun import materialize, server_command

    for index, cell in enumerate(cells):
        cell = materialize(cell, create=False)
        engine = get_engine(cell.engine)
        command = server_command(engine, cell, python=cell.python or sys.executable, port=DRY_RUN_PORT,
                                 devices=list(range(cell.gpus)), api_key=api_key)
        secrets.register_env(command.env)
        if index:
            print()
        print(_describe_cell(cell))
        for key, value in sorted(secrets.redact_env(command.env).items()):
            print(f"  env  {key}={value}")
        print(f"  argv {shlex.join(secrets.redact_argv(command.argv))}")
    print(f"\n{len(cells)} cell(s); nothing launched (a real run picks a free port instead of {DRY_RUN_PORT})")


def cmd_validate(args: argparse.Namespace) -> int:
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
        entry_count += check_baselines(baselines, suites)
        print(f"ok  {path}: {sum(len(m) for m in baselines.cells.values())} entries over {len(baselines.cells)} cells")
    for evaluation in EVALS.values():  # the files evals keep beside the baselines (numerics references)
        for line in evaluation.check_stored(args.baselines_dir) if evaluation.check_stored else ():
            print(line)
    print(f"checked {len(suites)} suites ({cell_count} cells) and {len(baseline_files)} baseline files "
          f"({entry_count} entries): no problems")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    run_a, run_b = load_run(args.run_a), load_run(args.run_b)
    cells = {}
    for result in run_a.cells:
        if result.status == "ok":
            cells[result.cell_id] = entries_from_result(run_a.suite, result, run_a, run_a.started_at or "")
    reference = Baselines(run_a.suite, args.run_a, cells)
    gate = GateSettings(**run_b.gate) if run_b.gate else GateSettings()
    if args.alpha is not None:
        gate = GateSettings(**{**asdict(gate), "alpha": args.alpha})
    planned = list(dict.fromkeys([*run_b.planned, *(c.cell_id for c in run_a.cells)]))
    verdicts = compare_results(planned, {c.cell_id: c for c in run_b.cells}, reference, gate)
    code = exit_code(verdicts)
    if args.json:
        from harness.cli import print_json

        print_json({"a": run_a.run_id, "b": run_b.run_id, "exit_code": code,
                    "verdicts": [v.to_dict() for v in verdicts]})
    else:
        print(f"A = {run_a.run_id}, B = {run_b.run_id}")
        print(render_console(verdicts, code), end="")
    return code


def cmd_baseline_update(args: argparse.Namespace) -> int:
    run = load_run(args.source)
    path = baseline_path(args.baselines_dir, run.suite)
    baselines = load_baselines(path)
    today = _dt.date.today().isoformat()
    updated, changes, refused = plan_update(baselines, run, cell_patterns=args.cell, force=args.force, today=today)
    stored, refused_references = _promote_references(args, run)
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
    print(f"wrote {path} ({len(changes)} entries from run {run.run_id})")
    return EXIT_OK


def _promote_references(args: argparse.Namespace, run) -> tuple[list[str], list[str]]:
    """The files the run's cells recorded for their evals (numerics references), stored beside the baselines."""
    import fnmatch

    stored: list[str] = []
    refused: list[str] = []
    run_dir = args.source if args.source.is_dir() else args.source.parent
    for evaluation in EVALS.values():
        cells = [c for c in run.cells if evaluation.name in c.evals and c.status == "ok"
                 and (not args.cell or any(fnmatch.fnmatchcase(c.cell_id, p) for p in args.cell))]
        if evaluation.promote is None or not cells:
            continue
        done, kept = evaluation.promote(run_dir, cells, args.baselines_dir / "references" / run.suite,
                                        force=args.force, dry_run=args.dry_run)
        stored += done
        refused += kept
    return stored, refused


def cmd_report(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    verdicts = [Verdict.from_dict(v) for v in run.verdicts]
    print(render_console(verdicts, run.exit_code), end="")
    return EXIT_OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    document = schema.read_document(args.path)
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind not in schema.CURRENT_VERSIONS:
        raise ConfigError(f"{args.path}: kind: not a harness file ({kind!r})")
    before = document.get("schema_version")
    upgraded = schema.check_version(document, args.path, kind, migrate=True)
    if upgraded.get("schema_version") == before:
        print(f"{args.path}: already at {kind} schema {before}")
        return EXIT_OK
    writer = schema.write_json if args.path.suffix == ".json" else schema.write_yaml
    writer(args.path, upgraded)
    print(f"{args.path}: {kind} schema {before} -> {upgraded['schema_version']}")
    return EXIT_OK


def cmd_memory(args: argparse.Namespace) -> int:
    from harness.engines import get_engine
    from harness.report.memory import render_memory

    try:
        lines = args.logfile.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise ConfigError(f"{args.logfile}: cannot read: {error.strerror}") from None
    report = get_engine(args.engine).parse_log(lines)
    if args.json:
        from harness.cli import print_json

        print_json(report.to_dict())
    else:
        print(render_memory(report), end="")
    return EXIT_OK


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    """An EvalConfig from `harness eval` flags, through the suite's own strict parser."""
    evaluation = EVALS[args.eval]
    given = {"protocol": args.protocol or evaluation.default_protocol,
             "questions": args.questions, "shots": args.shots, "max_tokens": args.max_tokens,
             "temperature": args.temperature, "repeats": args.repeats, "seed": args.seed,
             "concurrency": args.concurrency, "data": args.data}
    if args.chat_template_kwargs:
        try:
            given["chat_template_kwargs"] = json.loads(args.chat_template_kwargs)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--chat-template-kwargs: not JSON: {error}") from None
    return evaluation.parse({k: v for k, v in given.items() if v is not None}, Where("command line"))


def cmd_eval(args: argparse.Namespace) -> int:
    from harness.evals.base import EvalInfraError
    from harness.evals.registry import run_eval
    from harness.evals.runner import served_model
    from harness.results import cell_result_to_dict
    from harness.transport import set_api_key

    config = eval_config_from_args(args)
    base_url = args.base_url.rstrip("/")
    set_api_key(base_url, args.api_key)
    model = args.model or served_model(base_url, "default")
    try:
        if args.backend == "lm-eval":
            from harness.evals.lmeval_backend import run_lm_eval

            result = run_lm_eval(config, base_url, model=model)
        else:
            result = run_eval(config, base_url, model=model)
    except EvalInfraError as problem:
        print(f"harness: error: {problem}", file=sys.stderr)
        return EXIT_INFRA
    if args.json:
        from harness.cli import print_json
        from harness.results import CellResult

        body = cell_result_to_dict(CellResult(cell_id="adhoc", suite="adhoc", status="ok", cell={},
                                              evals={config.name: result}))
        print_json(body["evals"][config.name])
    else:
        accuracy = result.metrics["accuracy"]
        print(f"{config.name} ({config.protocol}): accuracy {accuracy.value:.4f} +/- {accuracy.stderr or 0:.4f} "
              f"over {accuracy.n} questions; invalid {result.metrics['invalid_rate'].value:.4f}; "
              f"{result.request_errors} failed requests; {result.timings.get('questions_per_s', 0)} q/s")
    return EXIT_OK


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from harness.evals import data

    fetch = EVALS[args.dataset].fetch
    assert fetch is not None  # the parser offers only the evals that fetch
    for path in fetch(hf_token=args.hf_token, sha256=args.sha256):
        print(f"{path}  sha256 {data.sha256_of(path)}")
    return EXIT_OK


def cmd_local_prepare(args: argparse.Namespace) -> int:
    from harness.local import models

    variants = args.variant or [v for v in models.VARIANTS if v != "bf16"]
    for variant in variants:
        for model in models.MODELS:
            path = models.ensure(f"{models.PREFIX}{model}/{variant}",
                                 log=lambda line: print(line, file=sys.stderr, flush=True))
            print(f"{models.PREFIX}{model}/{variant}  {path}")
    return EXIT_OK


def cmd_preflight(args: argparse.Namespace) -> int:
    """The preflight rules on every cell of a suite, or on one checkpoint (headers and config only)."""
    from harness import preflight

    if args.suite:
        from harness.cellrun import materialize
        from harness.suite import find_suite

        suite = load_suite(find_suite(args.suite, args.suites_dir))
        cells = [materialize(cell, create=False) for cell in select(expand(suite), args.cell)]
        versions = _engine_versions(cells, args.python or sys.executable, args.engine_version)
        checks = [preflight.check_cell(cell, token=args.hf_token, engine_version=versions.get(cell.engine))
                  for cell in cells]
    else:
        if args.draft and args.spec != "eagle3":
            raise ConfigError("--draft: only an EAGLE3 draft is checked (--spec eagle3)")
        if args.spec == "eagle3" and not args.draft:
            raise ConfigError("--spec eagle3 needs --draft PATH")
        from harness.engines.probe import package_version
        from harness.loading.launch import Launch
        from harness.loading.releases import choose

        release = choose(args.engine_version or package_version(args.python or sys.executable, "sglang")[0])
        # The environment preflight runs in stands for the server's (SGLANG_USE_AITER and the like).
        launch = Launch(tp=args.tp, quantization=args.quantization, release=release.release, ep=args.ep,
                        spec=args.spec or "none", env=dict(os.environ), vendor=args.vendor)
        check = preflight.check_checkpoint(args.checkpoint, args.checkpoint, launch, draft=args.draft,
                                           token=args.hf_token, release=release)
        if check.unavailable:  # named on the command line: not finding it is the user's error, not a skip
            raise ConfigError(f"--checkpoint: {check.unavailable}")
        checks = [check]
    if args.json:
        from harness.cli import print_json

        print_json([{"cell": c.cell_id, **c.to_dict()} for c in checks])
    else:
        print("\n".join(line for check in checks for line in preflight.describe(check)))
    return 1 if any(check.failures for check in checks) else EXIT_OK


def cmd_fixes(args: argparse.Namespace) -> int:
    """Each guarded fix: its rules, the suite cells that guard it, and the latest verdict of each cell."""
    from harness.loading.rules import RULE_FIXES

    guarding: dict[str, list[str]] = {fix_id: [] for fix_id in FIXES}
    for path in sorted(args.suites_dir.glob("*.yaml")):
        for cell in expand(load_suite(path)):
            if cell.fix in guarding:
                guarding[cell.fix].append(f"{cell.suite}:{cell.id}")
    latest = latest_verdicts(args.reports_dir)
    rows = []
    for fix in FIXES.values():
        cells = [{"cell": name, **latest.get(name, {"state": "never run"})} for name in guarding[fix.id]]
        rows.append({"fix": fix.id, "kind": fix.kind, "pr": fix.pr, "model": fix.model,
                     "validated_with": fix.validated_with,
                     "rules": sorted(rule for rule, fix_id in RULE_FIXES.items() if fix_id == fix.id),
                     "cells": cells})
    if args.json:
        from harness.cli import print_json

        print_json(rows)
        return EXIT_OK
    for row in rows:
        print(f"{row['fix']}{' [guard]' if row['kind'] == 'guard' else ''} ({row['pr']}): {row['model']}")
        print(f"  validated with: {row['validated_with']}")
        print(f"  rules: {', '.join(row['rules'])}")
        for cell in row["cells"] or [{"cell": "(no suite cell guards it)", "state": ""}]:
            where = f"  [{cell['run']}]" if "run" in cell else ""
            figures = f"  {cell['figures']}" if cell.get("figures") else ""
            print(f"  {cell['cell']:<52} {cell['state']}{where}{figures}")
    return EXIT_OK


def latest_verdicts(reports_dir: Path) -> dict[str, dict[str, str]]:
    """"suite:cell" -> the worst verdict of that cell in the newest run that has it, and that run's id."""
    from harness.compare import State

    runs = []
    for path in reports_dir.glob("*/results.json"):
        try:
            runs.append(load_run(path))
        except ConfigError:
            continue  # a broken or foreign file is no fix's latest result
    latest: dict[str, dict[str, str]] = {}
    for run in sorted(runs, key=lambda r: r.finished_at or "", reverse=True):
        states: dict[str, list[State]] = {}
        figures: dict[str, list[str]] = {}
        for verdict in run.verdicts:
            states.setdefault(verdict["cell_id"], []).append(State(verdict["state"]))
            if verdict.get("value") is not None:
                figures.setdefault(verdict["cell_id"], []).append(f"{verdict['metric']} {verdict['value']:.4g}")
        for cell_id, found in states.items():
            latest.setdefault(f"{run.suite}:{cell_id}",
                              {"state": max(found, key=lambda s: s.meaning.severity).value, "run": run.run_id,
                               "figures": ", ".join(figures.get(cell_id, []))})
    return latest
