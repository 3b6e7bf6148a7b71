"""`harness run` and `harness merge` as a pipeline of small steps (nox's workflow), the one home of the run:

load suite -> expand matrix -> select (a shard, or the cells a resumed run planned) -> preflight -> run cells
-> collect -> compare -> report -> exit code.

Each step is a function returning data; processes are started only by the cell runner (harness.cellrun)
through the engine layer. The CLI builds a RunRequest and calls `run` (or `merge`); nothing of the run's
logic lives in harness.commands.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.baselines import Baselines, MeasuredOn, baseline_path, load_baselines
from harness.compare import Verdict, compare_results, exit_code, same_kernels
from harness.engine_flags import MAX_MEMORY_FRACTION
from harness.errors import (
    EXIT_INFRA,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    HarnessError,
    report_internal_error,
)
from harness.evals.registry import EVALS
from harness.matrix import Cell, expand, select
from harness.protocols import protocol_differences, protocol_of
from harness.report import render_console, write_reports
from harness.report.format import plural
from harness.results import (
    STATUS_CONFIG_ERROR,
    STATUS_INFRA_ERROR,
    STATUS_OK,
    CellError,
    CellResult,
    RunResult,
    now_iso,
    write_cell_result,
)
from harness.strict import Where, did_you_mean
from harness.suite import Suite, find_suite, load_suite

if TYPE_CHECKING:
    from harness.preflight import CellPreflight
    from harness.schedule import Placement
    from harness.shard import Shard

CellRunner = Callable[[Cell, Path, list[int]], CellResult]  # (cell, run dir, its GPUs) -> result
DRY_RUN_PORT = 30000  # SGLang's default; a real launch takes a free port
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def say(line: str) -> None:
    """A progress line of harness's own, on stderr (engine and exporter output go to log files)."""
    print(f"harness: {line}", file=sys.stderr, flush=True)


# --- plan: load suite, expand, select --------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    suite: Suite
    cells: list[Cell]
    baselines: Baselines


def plan(suite_name: str, *, suites_dir: Path, baselines_dir: Path, cell_patterns: list[str] | None) -> Plan:
    suite = load_suite(find_suite(suite_name, suites_dir))
    every_cell = expand(suite)
    baselines = load_baselines(baseline_path(baselines_dir, suite.baselines))
    if baselines.cells:
        # `harness validate`'s check: a baseline whose cell is gone is an error, not a gate silently off.
        # A suite gated against another suite's baselines (local-defects) is checked against that suite.
        owner = every_cell if suite.baselines == suite.name else expand(load_suite(find_suite(suite.baselines,
                                                                                              suites_dir)))
        check_baselines(baselines, {baselines.suite: {cell.id: cell for cell in owner}})
    return Plan(suite, select(every_cell, cell_patterns), baselines)


def replan(suite_name: str, cell_ids: list[str], *, suites_dir: Path, baselines_dir: Path, source: str) -> Plan:
    """The cells a run recorded (a resumed run's plan.json, merged shards), as the suite defines them now."""
    the_plan = plan(suite_name, suites_dir=suites_dir, baselines_dir=baselines_dir, cell_patterns=None)
    by_id = {cell.id: cell for cell in the_plan.cells}
    unknown = [cell_id for cell_id in cell_ids if cell_id not in by_id]
    if unknown:
        raise ConfigError(f"{source}: cells: {unknown[0]} is no longer a cell of suite {suite_name} (the suite "
                          f"changed since the run was planned)")
    return dataclasses.replace(the_plan, cells=[by_id[cell_id] for cell_id in cell_ids])


def with_kernels(the_plan: Plan, kernels: str) -> Plan:
    """The plan with every cell's kernels set to `kernels` (--kernels, over what the suite says)."""
    from harness.kernels.selection import ENGINES, KERNELS

    if kernels not in KERNELS:
        raise ConfigError(f"--kernels {kernels!r}: expected one of {', '.join(KERNELS)}")
    engine = the_plan.suite.engine
    if engine not in ENGINES.get(kernels, (engine,)):
        raise ConfigError(f"--kernels {kernels}: suite {the_plan.suite.name} runs the {engine} engine, which never "
                          f"calls aiter (the reference kernels stand in for it in {', '.join(ENGINES[kernels])})")
    cells = [dataclasses.replace(cell, server=dataclasses.replace(cell.server, kernels=kernels))
             for cell in the_plan.cells]
    return dataclasses.replace(the_plan, cells=cells)


def refuse_shadowing_aiter(cells: list[Cell], runtime: dict, python: str, *, force: bool) -> None:
    """Reference kernels on a ROCm host with aiter installed would shadow the real aiter the baselines were
    measured with: refused unless forced."""
    from harness.engines.probe import package_version
    from harness.kernels.selection import AITER_REFERENCE

    chosen = [cell for cell in cells if cell.kernels == AITER_REFERENCE]
    if force or not chosen or "rocm" not in runtime:
        return
    version, _ = package_version(chosen[0].python or python, "amd-aiter")
    if version:
        raise ConfigError(f"{chosen[0].id}: kernels {AITER_REFERENCE} on a ROCm host with aiter installed "
                          f"(amd-aiter {version}) would shadow the real aiter; drop the setting, or pass "
                          f"--force-reference-kernels to measure the reference kernels here anyway")


def shards(the_plan: Plan, count: int, durations_from: Path | None) -> list[Shard]:
    """The plan's cells in `count` shards balanced by estimated GPU-seconds (past wall times from
    `durations_from`, which every runner must be given alike)."""
    from harness.history import past_durations
    from harness.shard import split

    known = past_durations([durations_from], the_plan.suite.name) if durations_from else {}
    return split(the_plan.cells, count, known)


def check_baselines(baselines: Baselines, suites: dict[str, dict[str, Cell]]) -> int:
    """Every baseline entry names a cell and an eval protocol of its suite; returns how many entries there are.
    A baseline whose cell no longer exists is an error, never silently ignored (its gate would be off)."""
    count, problems = baseline_problems(baselines, suites)
    if problems:
        raise problems[0]
    return count


def baseline_problems(baselines: Baselines, suites: dict[str, dict[str, Cell]]) -> tuple[int, list[ConfigError]]:
    """(the number of entries, every entry's problem): check_baselines' check, all of it (`harness validate`)."""
    where = Where(str(baselines.path))
    if baselines.suite not in suites:
        return 0, [where.error(f"no suite '{baselines.suite}'{did_you_mean(baselines.suite, suites)}")]
    cells = suites[baselines.suite]
    count, problems = 0, []
    for cell_id, metrics in baselines.cells.items():
        if cell_id not in cells:
            problems.append(where.key("cells").key(cell_id).error(
                f"no such cell in suite '{baselines.suite}'{did_you_mean(cell_id, cells)}"))
            continue
        declared = {e.name: protocol_of(e) for e in cells[cell_id].evals}
        for metric, entry in metrics.items():
            count += 1
            if entry.protocol is None:
                continue
            eval_name = metric.split(".", 1)[0]
            metric_where = where.key("cells").key(cell_id).key(metric)
            if eval_name not in declared:
                problems.append(metric_where.error(f"the suite runs no '{eval_name}' eval for this cell"))
                continue
            differences = protocol_differences(declared[eval_name], entry.protocol, result_may_be_unknown=True)
            if differences:
                problems.append(metric_where.key("protocol").error(
                    "differs from the suite's, so the gate could never compare: " + "; ".join(differences)))
    return count, problems


def new_run_id(suite: str) -> str:
    return f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{suite}"


def checked_run_id(run_id: str | None) -> str | None:
    """--run-id names one directory under reports/: a plain name, never a path out of it."""
    if run_id is not None and (not RUN_ID.fullmatch(run_id) or ".." in run_id):
        raise ConfigError(f"--run-id {run_id!r}: expected a plain name (letters, digits, '.', '_', '+', '-'; "
                          f"at most 128; no '/' or '..'), as it names reports/<run-id>/")
    return run_id


def make_run_dir(reports_dir: Path, run_id: str) -> Path:
    run_dir = reports_dir / run_id
    if run_dir.exists():
        # Results already measured are never overwritten.
        raise ConfigError(f"{run_dir}: a run with this id exists already; choose another --run-id")
    run_dir.mkdir(parents=True)
    return run_dir


# --- the run --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRequest:
    """What `harness run` was asked: which cells (a suite's selection, one shard, or a run to resume), where
    and how to run them."""

    suite: str | None = None
    resume: Path | None = None
    retry_failed: bool = False
    cells: list[str] | None = None  # globs on cell ids
    shard: str | None = None  # "k/n"
    durations_from: Path | None = None
    gpus: str | None = None
    max_parallel: int | None = None
    share_gpus: int = 1
    dry_run: bool = False
    run_id: str | None = None
    python: str | None = None
    api_key: str | None = None
    preflight: bool = True
    engine_version: str | None = None
    sequential: bool | None = None  # --sequential / --no-sequential; None: the suite's gate.sequential
    kernels: str | None = None  # --kernels: every cell's kernels (harness.kernels.selection), over the suite's
    force_reference_kernels: bool = False
    # harness bisect: directories first on the servers' PYTHONPATH (an engine build's checkout), the figures to
    # gate against instead of the stored baselines (the good build's), and whether stdout gets the verdict table
    # and the reports line (bisect prints its own).
    engine_pythonpath: tuple[str, ...] = ()
    gate_against: Baselines | None = None
    console: bool = True
    suites_dir: Path = Path("suites")
    baselines_dir: Path = Path("baselines")
    reports_dir: Path = Path("reports")


def run(request: RunRequest) -> int:
    """Run the plan's cells. Once the run directory exists every way out (the end, a signal, a bug in
    harness) tears the servers down and writes results.json, summary.md and junit.xml from what was measured."""
    from harness import interrupts, rundir
    from harness.engines.devices import discover

    the_plan, run_id, run_dir = _resumed_plan(request) if request.resume else _fresh_plan(request)
    if request.sequential is not None:  # the run's choice wins over the suite's, and is what results.json records
        gate = dataclasses.replace(the_plan.suite.gate, sequential=request.sequential)
        the_plan = dataclasses.replace(the_plan, suite=dataclasses.replace(the_plan.suite, gate=gate))
    the_plan = _gated_against(the_plan, request.gate_against)
    if request.dry_run:
        print_dry_run(the_plan.cells, api_key=request.api_key)
        return EXIT_OK
    if request.share_gpus < 1:
        raise ConfigError(f"--share-gpus {request.share_gpus}: must be at least 1")
    if request.max_parallel is not None and request.max_parallel < 1:
        raise ConfigError(f"--max-parallel {request.max_parallel}: must be at least 1")
    check_eval_data(the_plan.cells)
    sweep_leftovers()
    gpus, runtime = discover()
    host_gpus = _host_gpus(request.gpus, gpus, the_plan.suite) * request.share_gpus
    check_shared_memory(the_plan.cells, gpus, request.share_gpus)
    if run_dir is None:
        run_dir = make_run_dir(request.reports_dir, run_id)
        rundir.write_plan(run_dir, run_id=run_id, suite=the_plan.suite.name, cells=[c.id for c in the_plan.cells],
                          shard=request.shard, kernels=request.kernels)
    started_at = now_iso()
    machine: dict = {}
    interrupted, failure = False, None
    try:
        machine = _execute(request, the_plan, run_dir, host_gpus, (gpus, runtime))
    except KeyboardInterrupt:
        interrupted = True
    except Exception as error:  # noqa: BLE001 - a harness bug outside the cells: reported after the reports
        failure = error
    with interrupts.deferred():  # a signal now would only cut the reports short
        finished = _conclude_with_what_exists(the_plan, run_id, run_dir, started_at, machine,
                                              console=request.console)
    if request.console:
        print(f"reports: {run_dir}/ (results.json, summary.md, junit.xml)")
    if failure is not None:
        if isinstance(failure, HarnessError):
            raise failure
        report_internal_error(failure)
        return EXIT_INTERNAL
    if interrupted or interrupts.received():
        print(f"harness: interrupted ({interrupts.received() or 'SIGINT'}); servers torn down, the cells measured "
              f"so far are saved (harness run --resume {run_dir})", file=sys.stderr)
        return EXIT_INTERRUPTED
    return finished.exit_code if finished is not None and finished.exit_code is not None else EXIT_INTERNAL


def check_shared_memory(cells: list[Cell], gpus: list[dict], share: int) -> None:
    """Cells sized in GiB (`server.memory_gib`) that share a GPU must fit on it together: else a ConfigError
    before anything is launched, rather than servers running each other out of memory."""
    sizes = [gpu["memory_total_gib"] for gpu in gpus if isinstance(gpu.get("memory_total_gib"), (int, float))]
    sized = [cell.server.memory_gib for cell in cells if cell.server.memory_gib is not None]
    if not sizes or not sized or share == 1:
        return
    smallest, largest_cell = min(sizes), max(sized)
    if share * largest_cell > smallest * MAX_MEMORY_FRACTION:
        raise ConfigError(f"--share-gpus {share}: {share} servers of server.memory_gib {largest_cell:g} take "
                          f"{share * largest_cell:g} GiB, more than {MAX_MEMORY_FRACTION:.0%} of a {smallest:g} GiB "
                          f"GPU; share fewer")


def _resumed_plan(request: RunRequest) -> tuple[Plan, str, Path]:
    """The plan of a run being resumed: the cells its plan.json names, as the suite defines them now."""
    from harness.history import PLAN_FILE, read_plan

    assert request.resume is not None
    if request.shard or request.cells or request.run_id or request.kernels:
        raise ConfigError("--resume: the run directory's plan.json decides the cells and their kernels; "
                          "drop --shard/--cell/--run-id/--kernels")
    recorded = read_plan(request.resume)
    the_plan = replan(recorded["suite"], recorded["cells"], suites_dir=request.suites_dir,
                      baselines_dir=request.baselines_dir, source=str(request.resume / PLAN_FILE))
    if recorded.get("kernels"):
        the_plan = with_kernels(the_plan, recorded["kernels"])
    return the_plan, recorded["run_id"], request.resume


def _fresh_plan(request: RunRequest) -> tuple[Plan, str, None]:
    """A new run's plan: the suite's selected cells, or one shard of them; its directory is made at launch."""
    assert request.suite is not None
    the_plan = plan(request.suite, suites_dir=request.suites_dir, baselines_dir=request.baselines_dir,
                    cell_patterns=request.cells)
    if request.kernels:
        the_plan = with_kernels(the_plan, request.kernels)
    suffix = ""
    if request.shard:
        from harness.shard import parse_shard

        index, count = parse_shard(request.shard)
        the_plan = dataclasses.replace(the_plan,
                                       cells=list(shards(the_plan, count, request.durations_from)[index - 1].cells))
        suffix = f"-shard{request.shard.replace('/', 'of')}"
    return the_plan, checked_run_id(request.run_id) or new_run_id(the_plan.suite.name) + suffix, None


def _gated_against(the_plan: Plan, figures: Baselines | None) -> Plan:
    """The plan gated against other figures than the stored baselines (harness bisect: the good build's); its
    cells are then plain cells (a canary's expected regression is about the stored baselines)."""
    if figures is None:
        return the_plan
    return dataclasses.replace(the_plan, baselines=figures,
                               cells=[dataclasses.replace(cell, baseline_id=None) for cell in the_plan.cells])


def _host_gpus(flag: str | None, discovered: list[dict], suite: Suite) -> list[int]:
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


def sweep_leftovers() -> None:
    """Servers a killed harness left on this host (harness.engines.leftovers) are torn down first."""
    from harness.engines import leftovers

    leftovers.sweep(say=lambda line: say(f"leftovers: {line}"))


def _execute(request: RunRequest, the_plan: Plan, run_dir: Path, host_gpus: list[int],
             discovered: tuple[list[dict], dict]) -> dict:
    """Preflight and run the cells not finished yet; returns the machine description."""
    from harness import rundir
    from harness.cellrun import RunOptions, materialize
    from harness.history import read_cells
    from harness.machine import machine_info

    references = request.baselines_dir / "references" / the_plan.suite.baselines
    options = RunOptions(python=request.python or sys.executable, machine=machine_info(*discovered),
                         evaluator=_evaluator(references, sequential_references(the_plan)), api_key=request.api_key,
                         exclusive_devices=request.share_gpus == 1, pythonpath=request.engine_pythonpath)
    kept = {}
    if request.resume:
        kept = {cell_id: result for cell_id, result in read_cells(run_dir).items()
                if rundir.finished(result, retry_failed=request.retry_failed)}
    to_run = [cell for cell in the_plan.cells if cell.id not in kept]
    print(f"harness: run {run_dir.name}: {plural(len(to_run), 'cell')} of suite {the_plan.suite.name}"
          + (f" ({len(kept)} finished earlier, kept)" if kept else ""), file=sys.stderr)
    if to_run:  # the engines' own output never reaches this terminal
        say(f"each server's output: {run_dir}/cells/<cell>/server.log")
    to_run = _with_engine_python(to_run, request.python, the_plan.suite)
    refuse_shadowing_aiter(to_run, discovered[1], options.python, force=request.force_reference_kernels)
    prepare_local_checkpoints(to_run, options.python)
    # As they will run here: `vendor: auto` decided (a CPU machine's cells hold no GPUs), local paths resolved.
    to_run = [materialize(cell, create=False) for cell in to_run]
    checks = preflight_cells(to_run, engine_versions(to_run, options.python, request.engine_version)) \
        if request.preflight else {}
    unmeasurable = unmeasurable_cells(to_run, references)
    gpus_found = bool(discovered[0]) or bool(request.gpus)
    if not gpus_found and any(cell.gpus for cell in to_run):
        say(f"no GPU found on this host (neither NVML, nvidia-smi nor amd-smi answered): the cells' servers get "
            f"the device numbers of the suite's {the_plan.suite.hardware.gpus} declared GPUs, which no real engine "
            f"can use here")
    _, interrupted = run_cells(to_run, run_dir, _gated_runner(options, checks, unmeasurable), host_gpus,
                               max_parallel=request.max_parallel, progress=say, gpus_found=gpus_found)
    if interrupted:
        raise KeyboardInterrupt
    return options.machine


def _gated_runner(options, checks: dict[str, CellPreflight], unmeasurable: dict[str, CellError]) -> CellRunner:
    """The cell runner behind the checks made before launch: a cell that failed preflight, or that an eval
    cannot measure, is never launched (CONFIG_ERROR)."""
    from harness import rundir
    from harness.cellrun import run_cell
    from harness.preflight import config_failure, with_preflight

    def checked_run_cell(cell: Cell, cell_run_dir: Path, devices: list[int]) -> CellResult:
        rundir.keep_previous_attempt(cell_run_dir, cell.id)  # a resumed cell's earlier attempt stays on disk
        check = checks.get(cell.id)
        if check is not None and check.failures:
            return config_failure(cell, check)  # never launched: the load would fail as the rule says
        if cell.id in unmeasurable:  # an eval has nothing to measure it against
            return not_launched(cell, unmeasurable[cell.id])
        result = run_cell(cell, cell_run_dir, options, devices=devices)
        return result if check is None else with_preflight(result, cell, check)

    return checked_run_cell


def _evaluator(references: Path, sequential: dict | None = None):
    """The evals that run against each ready server (stored references from `references`; the sequential
    gate's references per cell)."""
    import functools

    from harness.cellrun import run_cell_evals

    return functools.partial(run_cell_evals, references=references, sequential=sequential or {})


def sequential_references(the_plan: Plan) -> dict[str, dict[str, tuple]]:
    """Per cell, the question evals that may stop early and what they are compared with: under
    `gate.sequential`, each accuracy with a comparable baseline (the cell's own, a canary's model's) that has
    per-question outcomes (paired) or a value and n (unpaired). A figure without one (no baseline yet, another
    protocol) is measured in full: a baseline needs every question, and NOT_COMPARABLE has nothing to stop on."""
    from harness.metrics import METRICS
    from harness.sequential import Reference, Rule

    gate = the_plan.suite.gate
    if not gate.sequential:
        return {}
    found: dict[str, dict[str, tuple]] = {}
    for cell in the_plan.cells:
        entries = the_plan.baselines.cells.get(cell.baseline_id or cell.id, {})
        declared = {config.name: protocol_of(config) for config in cell.evals}
        for name, protocol in declared.items():
            metric = f"{name}.accuracy"
            entry = entries.get(metric)
            if metric not in METRICS or not METRICS[metric].kind.counted or entry is None:
                continue
            if entry.protocol is not None and protocol_differences(protocol, entry.protocol, result_may_be_unknown=True):
                continue
            if not entry.outcomes and (entry.value is None or not entry.n):
                continue
            if same_kernels(metric, MeasuredOn(kernels=cell.kernels), entry.where_measured) is not None:
                continue  # NOT_COMPARABLE at the end whatever it measures: nothing to stop on
            reference = Reference(outcomes=entry.outcomes or None, value=entry.value, n=entry.n, floor=entry.floor)
            found.setdefault(cell.id, {})[name] = (reference, Rule(gate.alpha, gate.min_effect_for(metric)))
    return found


def _with_engine_python(cells: list[Cell], flag: str | None, suite: Suite) -> list[Cell]:
    """--python, else the suite's `python:` (which must exist), for every server the cells start."""
    if flag:
        return [dataclasses.replace(cell, python=flag) for cell in cells]
    if suite.python and cells and not Path(suite.python).exists():
        raise Where(str(suite.path)).key("python").error(
            f"{suite.python} does not exist (relative paths start in the working directory; `make vllm-env` "
            f"makes .venv-vllm)")
    return cells


def prepare_local_checkpoints(cells: list[Cell], python: str) -> None:
    """Export the `local:` checkpoints the cells need before any server starts (once; then cached)."""
    from harness.local import models

    for reference in dict.fromkeys(c.checkpoint.path for c in cells if models.is_local(c.checkpoint.path)):
        models.ensure(reference, python=python, log=lambda line: print(line, file=sys.stderr, flush=True))


def engine_versions(cells: list[Cell], python: str, override: str | None) -> dict[str, str | None]:
    """The version of each engine whose loader preflight predicts (EngineSpec.predicts_loader) in the cells'
    Python (`--engine-version` wins): the release whose loader the rules predict. Probed once per engine (a
    Python start); other engines' cells get none (the newest known release)."""
    from harness.engine_specs import ENGINES
    from harness.engines.probe import package_version

    probed = [name for name in dict.fromkeys(cell.engine for cell in cells) if ENGINES[name].predicts_loader]
    return {name: override or package_version(python, ENGINES[name].distribution)[0] for name in probed}


def preflight_cells(cells: list[Cell], versions: dict[str, str | None]) -> dict[str, CellPreflight]:
    """Each cell's preflight (headers only: seconds even for a trillion parameters), printed as it goes.
    The cells come materialized: their checkpoints are the directories that will be served."""
    from harness.preflight import check_cell

    checks = {}
    for cell in cells:
        check = checks[cell.id] = check_cell(cell, engine_version=versions.get(cell.engine))
        verdict = ("FAIL: " + check.message() if check.failures else
                   f"skipped ({check.unavailable})" if check.unavailable else "pass")
        say(f"preflight {cell.id}: {verdict}")
    return checks


def check_eval_data(cells: list[Cell]) -> None:
    """Every data file the cells' evals will read is here, before any server launches: a missing one is
    a ConfigError (exit 2) naming the file, raised once for the run."""
    checked: list = []  # configs hold mappings: unhashable
    for config in (config for cell in cells for config in cell.evals):
        check = EVALS[config.name].check_data
        if check is not None and config not in checked:
            checked.append(config)
            check(config)


def unmeasurable_cells(cells: list[Cell], references: Path) -> dict[str, CellError]:
    """Cells an eval cannot measure (numerics: no stored reference to measure against): not launched."""
    problems: dict[str, CellError] = {}
    for cell in cells:
        for name in dict.fromkeys(config.name for config in cell.evals):
            hook = EVALS[name].unmeasurable
            problem = hook(cell.subject(), references) if hook is not None else None
            if problem is not None and cell.id not in problems:
                problems[cell.id] = problem
                say(f"{cell.id}: not launched: {problem.message}")
    return problems


def not_launched(cell: Cell, error: CellError) -> CellResult:
    """The result of a cell kept from launching by a config problem (CONFIG_ERROR)."""
    stamp = now_iso()
    return CellResult(cell_id=cell.id, suite=cell.suite, status=STATUS_CONFIG_ERROR, cell=cell.resolved(),
                      error=error, started_at=stamp, finished_at=stamp)


def run_cells(cells: list[Cell], run_dir: Path, runner: CellRunner, host_gpus: list[int],
              progress: Callable[[str], None] = lambda line: None,
              max_parallel: int | None = None, gpus_found: bool = True) -> tuple[list[CellResult], bool]:
    """Run the cells packed onto the host's GPUs, writing each result as soon as it exists so that nothing
    measured is lost. Returns the results and whether the run was interrupted (Ctrl-C); the cells in
    flight when that happened are kept, with what they had measured. Without `gpus_found`, the host's GPUs
    are the suite's declared device numbers only, and the progress lines never call them GPUs."""
    from harness.schedule import run_packed, too_large

    for cell in too_large(cells, host_gpus):
        progress(f"{cell.id}: needs {cell.gpus} GPUs, this host has {len(set(host_gpus))}: not run")
    done = 0

    def started(placement: Placement) -> None:
        devices = ','.join(map(str, placement.devices))
        where = ("CPU" if not placement.devices else f"GPUs {devices}" if gpus_found
                 else f"device numbers {devices} (no GPU found on this host)")
        progress(f"{placement.cell.id}: launching on {where}")

    def finished(result: CellResult) -> None:
        nonlocal done
        done += 1
        write_cell_result(run_dir, result)
        progress(f"[{done}/{len(cells)}] {result.cell_id}: {_finished_as(result)} in "
                 f"{result.timings.get('total_s', 0):.1f} s")

    return run_packed(cells, host_gpus, lambda cell, devices: runner(cell, run_dir, devices),
                      on_start=started, on_done=finished, max_parallel=max_parallel)


# What a finished cell's status means before the gate has spoken: "ok" would read as a verdict.
_FINISHED_AS = {STATUS_OK: "measured", STATUS_INFRA_ERROR: "failed", STATUS_CONFIG_ERROR: "not launched"}


def _finished_as(result: CellResult) -> str:
    """`measured` (the verdicts come with the table at the end), `failed (oom_load)`, `not launched (preflight)`."""
    text = _FINISHED_AS.get(result.status, result.status)
    return text if result.error is None else f"{text} ({result.error.cause})"


# --- collect, compare, report ---------------------------------------------------------------------------

def conclude(the_plan: Plan, run_id: str, run_dir: Path, results: list[CellResult], *, started_at: str,
             machine: dict) -> tuple[RunResult, list[Verdict]]:
    """Compare, write every report, and return the run with its verdicts and exit code."""
    planned = [c.id for c in the_plan.cells]
    verdicts = compare_results(planned, {r.cell_id: r for r in results}, the_plan.baselines,
                               the_plan.suite.gate, {c.id: c.fix for c in the_plan.cells},
                               {c.id: c.baseline_id for c in the_plan.cells if c.baseline_id})
    run_result = RunResult(
        run_id=run_id, suite=the_plan.suite.name, planned=tuple(planned), cells=tuple(results),
        verdicts=tuple(v.to_dict() for v in verdicts), exit_code=exit_code(verdicts), machine=machine,
        started_at=started_at, finished_at=now_iso(), gate=asdict(the_plan.suite.gate),
    )
    write_reports(run_dir, run_result, verdicts)
    return run_result, verdicts


def _conclude_with_what_exists(the_plan: Plan, run_id: str, run_dir: Path, started_at: str,
                               machine: dict, *, console: bool = True) -> RunResult | None:
    """Compare and report every cell result on disk (each was written as its cell finished); None when even
    that failed (the error is printed, results.json then lists the results without verdicts)."""
    from harness.history import read_cells
    from harness.results import write_run

    results: list[CellResult] = []
    try:
        order = {cell.id: index for index, cell in enumerate(the_plan.cells)}
        results = sorted((r for r in read_cells(run_dir).values() if r.cell_id in order),
                         key=lambda r: order[r.cell_id])
        finished, verdicts = conclude(the_plan, run_id, run_dir, results, started_at=started_at, machine=machine)
    except Exception as error:  # noqa: BLE001 - a bug in comparing or reporting: keep the results regardless
        report_internal_error(error)
        write_run(run_dir, RunResult(run_id=run_id, suite=the_plan.suite.name,
                                     planned=tuple(c.id for c in the_plan.cells), cells=tuple(results),
                                     exit_code=EXIT_INTERNAL, machine=machine, started_at=started_at,
                                     finished_at=now_iso()))
        return None
    if console:
        print(render_console(verdicts, finished.exit_code), end="")
    return finished


def merge(runs: list[Path], *, run_id: str | None, suites_dir: Path, baselines_dir: Path, reports_dir: Path) -> int:
    """Shard runs merged into one run, compared and reported as one."""
    from harness import rundir
    from harness.history import PLAN_FILE

    run_id = checked_run_id(run_id) or f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-merged"
    target = make_run_dir(reports_dir, run_id)
    suite, planned, results, machines = rundir.merge(runs, target)
    the_plan = replan(suite, planned, suites_dir=suites_dir, baselines_dir=baselines_dir,
                      source=f"{' + '.join(str(r) for r in runs)} ({PLAN_FILE})")
    rundir.write_plan(target, run_id=run_id, suite=suite, cells=planned, shard=None)
    started = min((r.started_at for r in results.values() if r.started_at), default=now_iso())
    merged, verdicts = conclude(the_plan, run_id, target, [results[c] for c in planned if c in results],
                                started_at=started, machine={"shards": machines})
    print(render_console(verdicts, merged.exit_code), end="")
    print(f"reports: {target}/ (results.json, summary.md, junit.xml), merged from {plural(len(runs), 'run')}")
    return merged.exit_code if merged.exit_code is not None else EXIT_INTERNAL


def recorded_exit_code(run_dir: Path) -> tuple[int, str]:
    """A run directory's exit code and where it came from. A run that never concluded (killed, lost with its
    node) is a run whose cells were not measured: infrastructure, never a pass."""
    from harness.history import RESULTS_FILE, open_run

    if not (run_dir / RESULTS_FILE).exists():
        return EXIT_INFRA, f"no {RESULTS_FILE}: the run never concluded"
    try:
        run_result = open_run(run_dir)
    except ConfigError as error:
        return error.exit_code, str(error)
    if run_result.exit_code is not None:
        return run_result.exit_code, "recorded"
    return exit_code(Verdict.from_dict(v) for v in run_result.verdicts), "from its verdicts"


# --- the dry run ----------------------------------------------------------------------------------------

def print_dry_run(cells: list[Cell], *, api_key: str | None = None) -> None:
    """Per cell, the exact server argv and environment a run would launch; launches nothing."""
    from harness import secrets
    from harness.cellrun import materialize, server_command, sized_for
    from harness.engines import get_engine
    from harness.kernels.selection import HOOK_FILE, NATIVE, pythonpath_entries

    for index, cell in enumerate(cells):
        cell = sized_for(materialize(cell, create=False), None, dry_run=True)
        engine = get_engine(cell.engine)
        command = server_command(engine, cell, python=cell.python or sys.executable, port=DRY_RUN_PORT,
                                 devices=list(range(cell.gpus)), api_key=api_key)
        secrets.register_env(command.env)
        if index:
            print()
        print(cell.describe())
        for key, value in sorted(secrets.redact_env(command.env).items()):
            print(f"  env  {key}={value}")
        if cell.kernels != NATIVE:
            hooks = [str(Path(p) / HOOK_FILE) for p in pythonpath_entries(cell.kernels)]
            print(f"  kernels {cell.kernels}: hook {', '.join(hooks)} (first on PYTHONPATH)")
        print(f"  argv {command.display()}")
    print(f"\n{plural(len(cells), 'cell')}; nothing launched (a real run picks a free port instead of {DRY_RUN_PORT})")
