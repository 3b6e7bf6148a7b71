"""The bodies of the CLI's commands: each wires pipeline steps and prints; no logic of its own."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from harness import pipeline, schema
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
from harness.errors import EXIT_INFRA, EXIT_OK, ConfigError
from harness.evals.base import EvalConfig
from harness.evals.registry import EVALS
from harness.fixes import FIXES
from harness.matrix import expand, select
from harness.report import render_console
from harness.report.format import describe_cell
from harness.results import load_run
from harness.strict import Where
from harness.suite import GateSettings, load_suite

DRY_RUN_PORT = 30000  # SGLang's default; a real launch takes a free port


def cmd_list(args: argparse.Namespace) -> int:
    from harness.suite import find_suite

    suite = load_suite(find_suite(args.suite, args.suites_dir))
    for cell in select(expand(suite), args.cell):
        print(describe_cell(cell))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`harness run`: the pipeline (harness.pipeline) does the whole run."""
    return pipeline.run(pipeline.RunRequest(
        suite=args.suite, resume=args.resume, retry_failed=args.retry_failed, cells=args.cell, shard=args.shard,
        durations_from=args.durations_from, gpus=args.gpus, max_parallel=args.max_parallel,
        share_gpus=args.share_gpus, dry_run=args.dry_run, run_id=args.run_id, python=args.python,
        api_key=args.api_key, preflight=not args.no_preflight, engine_version=args.engine_version,
        suites_dir=args.suites_dir, baselines_dir=args.baselines_dir, reports_dir=args.reports_dir))


def cmd_plan(args: argparse.Namespace) -> int:
    """The suite's cells split into shards for CI runners (--format github: a job matrix)."""
    the_plan = pipeline.plan(args.suite, suites_dir=args.suites_dir, baselines_dir=args.baselines_dir,
                             cell_patterns=args.cell)
    shards = pipeline.shards(the_plan, args.shards, args.durations_from)
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
    """Shard runs merged into one run, compared and reported as one (harness.pipeline)."""
    return pipeline.merge(args.runs, run_id=args.run_id, suites_dir=args.suites_dir,
                          baselines_dir=args.baselines_dir, reports_dir=args.reports_dir)


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
        entry_count += pipeline.check_baselines(baselines, suites)
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
        versions = pipeline.engine_versions(cells, args.python or sys.executable, args.engine_version)
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
