"""One cell, start to finish: launch its server, wait, measure, always tear down, classify.

The pipeline calls `run_cell` once per cell. Every process is started and stopped through the
engine layer; evals reach the server through the evaluator (harness.evals), never directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.engines import get_engine
from harness.engines.base import Engine, ServerCommand, engine_version
from harness.engines.devices import PeakSampler, assign, detect_vendor, used_by_device, wait_until_released
from harness.engines.failures import classify, missing_engine_hint
from harness.engines.launcher import ServerProcess, launch, log_tail, teardown, wait_ready
from harness.evals.base import EvalContext, EvalInfraError
from harness.evals.registry import run_eval
from harness.matrix import Cell
from harness.results import (
    STATUS_INFRA_ERROR,
    STATUS_OK,
    CellError,
    CellResult,
    EvalResult,
    cell_dir_name,
    now_iso,
)
from harness.schedule import CellInterrupted
from harness.transport import deadline, set_api_key

Evaluator = Callable[[Cell, str, Path], dict[str, EvalResult]]


def no_evals(cell: Cell, base_url: str, cell_dir: Path) -> dict[str, EvalResult]:
    return {}


def run_cell_evals(cell: Cell, base_url: str, cell_dir: Path, *, references: Path | None = None,
                   sequential: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, EvalResult]:
    """Every eval of the cell, in order; a failing one keeps the results of those before it.
    `references`: the stored references of the suite's baselines (harness.evals.numerics); `sequential`: per
    cell id, the evals that stop once their verdict is decided and what they are compared with (the server
    stays up for the cell's other evals)."""
    from harness.evals.runner import served_model

    model = get_engine(cell.engine).request_model(cell.checkpoint.path) or served_model(base_url, cell.checkpoint.path)
    context = EvalContext(subject=cell.subject(), cell_dir=cell_dir, references=references,
                          sequential=dict((sequential or {}).get(cell.id, {})))
    results: dict[str, EvalResult] = {}
    for config in cell.evals:
        try:
            results[config.name] = run_eval(config, base_url, model=model, context=context)
        except EvalInfraError as problem:
            raise EvalInfraError(problem.cause, str(problem), {**results, **problem.partial}) from None
    return results


@dataclass(frozen=True)
class RunOptions:
    python: str = sys.executable
    evaluator: Evaluator = no_evals
    sample_interval_s: float = 0.5
    machine: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None  # `harness run --api-key`: the servers require it, the evals send it
    # False when cells share GPUs (--share-gpus): a device's memory is then no one cell's, so neither the
    # sampler's peak nor the wait for the memory to come back says anything about this cell.
    exclusive_devices: bool = True
    # Directories put first on every server's PYTHONPATH: an engine build's source checkout (harness bisect).
    pythonpath: tuple[str, ...] = ()


_PORTS_LOCK = threading.Lock()
_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never the same twice in this process: cells packed on one host start
    at once, and a probed port is only free until some server binds it."""
    with _PORTS_LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            if port not in _PORTS_GIVEN:
                _PORTS_GIVEN.add(port)
                return port


@dataclass
class _Measured:
    evals: dict[str, EvalResult] = field(default_factory=dict)
    accept_length: float | None = None
    spec_states: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    error: CellError | None = None
    timings: dict[str, float] = field(default_factory=dict)


def materialize(cell: Cell, *, python: str = sys.executable, create: bool = True) -> Cell:
    """The cell as it runs on this machine: `vendor: auto` resolved, `local:` checkpoints (and drafts) resolved to
    their directories (exported first when `create`; a dry run only shows where they would be)."""
    from harness.local import models

    if cell.hardware.vendor == "auto":
        cell = dataclasses.replace(cell, hardware=dataclasses.replace(cell.hardware, vendor=detect_vendor()))
    def local_path(reference: str) -> str:
        return str(models.ensure(reference, python=python) if create else models.resolve(reference))

    if models.is_local(cell.checkpoint.path):
        cell = dataclasses.replace(cell, checkpoint=dataclasses.replace(cell.checkpoint,
                                                                        path=local_path(cell.checkpoint.path)))
    if cell.draft is not None and models.is_local(cell.draft.path):  # a rig draft (tiny-dsv3-eagle3/...)
        cell = dataclasses.replace(cell, draft=dataclasses.replace(cell.draft, path=local_path(cell.draft.path)))
    return cell


def gpu_memory_gib(machine: dict[str, Any], devices: list[int]) -> float | None:
    """The memory of the smallest of the GPUs a cell holds, as the engine layer found them; None if unknown."""
    sizes = [gpu["memory_total_gib"] for gpu in machine.get("gpus") or []
             if gpu.get("index") in devices and isinstance(gpu.get("memory_total_gib"), (int, float))]
    return min(sizes) if sizes else None


def sized_for(cell: Cell, device_gib: float | None, *, dry_run: bool = False) -> Cell:
    """The cell with its `server.memory_gib` turned into the engine's fraction of the GPU it runs on (a
    placeholder in a dry run). A GPU of unknown or too small memory cannot be sized for: LaunchFailed."""
    from harness.engine_flags import memory_fraction_args

    if cell.server.memory_gib is None:
        return cell
    if device_gib is None and not dry_run:
        raise LaunchFailed(CellError("launch_failed", f"server.memory_gib {cell.server.memory_gib:g}: the memory "
                                     "of the cell's GPUs is unknown here (no GPU tool reported it)", ""))
    try:
        flag = memory_fraction_args(cell.engine, cell.server.memory_gib, device_gib)
    except ValueError as problem:
        raise LaunchFailed(CellError("launch_failed", f"server.{problem}", "")) from None
    return dataclasses.replace(cell, server=dataclasses.replace(cell.server, args=(*cell.server.args, *flag)))


def run_cell(cell: Cell, run_dir: Path, options: RunOptions, devices: list[int] | None = None) -> CellResult:
    """One cell, start to finish, on `devices` (the host scheduler's placement; by default the first GPUs).

    Never raises but CellInterrupted: a failure of harness itself inside the cell (a bug, an engine that
    cannot be started) makes the cell INFRA_ERROR with the traceback, and the run goes on."""
    started_at, start = now_iso(), time.monotonic()
    try:
        return _run_cell(cell, run_dir, options, devices)
    except CellInterrupted:
        raise
    except KeyboardInterrupt:  # before a server existed: nothing to tear down, nothing measured
        raise CellInterrupted(_unlaunched(cell, CellError("interrupted", "interrupted before launch"), started_at,
                                          start, options, devices)) from None
    except LaunchFailed as failed:
        return _unlaunched(cell, failed.error, started_at, start, options, devices)
    except Exception as error:  # noqa: BLE001 - a harness bug must cost one cell, not the run
        return _unlaunched(cell, internal_error(error), started_at, start, options, devices)


class LaunchFailed(Exception):  # noqa: N818 - reads as what happened
    def __init__(self, error: CellError):
        super().__init__(error.message)
        self.error = error


def internal_error(error: BaseException) -> CellError:
    """A failure of harness's own code, with its traceback, for the cell's result."""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return CellError("harness_error", f"internal error in harness: {type(error).__name__}: {error}", trace)


def _unlaunched(cell: Cell, error: CellError, started_at: str, start: float, options: RunOptions,
                devices: list[int] | None) -> CellResult:
    return CellResult(cell_id=cell.id, suite=cell.suite, status=STATUS_INFRA_ERROR, cell=cell.resolved(),
                      timings={"total_s": round(time.monotonic() - start, 3)},
                      machine={**options.machine, "devices": list(devices or [])},
                      engine={"name": cell.engine, "version": None, "commit": None, "kernels": cell.kernels},
                      error=error,
                      started_at=started_at, finished_at=now_iso())


def _run_cell(cell: Cell, run_dir: Path, options: RunOptions, devices: list[int] | None) -> CellResult:
    cell = materialize(cell, python=options.python)
    engine = get_engine(cell.engine)
    cell_dir = run_dir / "cells" / cell_dir_name(cell.id)
    devices = assign(cell.gpus, cell.hardware.vendor) if devices is None else devices
    cell = sized_for(cell, gpu_memory_gib(options.machine, devices))
    command = server_command(engine, cell, python=cell.python or options.python, port=free_port(), devices=devices,
                             api_key=options.api_key)
    command = dataclasses.replace(command, env={**command.env, **engine.launch_env(cell, cell_dir)})
    command = with_pythonpath_first(command, options.pythonpath)
    measured_devices = devices if options.exclusive_devices else []
    used_before = used_by_device(measured_devices)
    started_at, start = now_iso(), time.monotonic()
    measured = _Measured()
    interrupted = False
    try:
        server = launch(command, cell_dir / "server.log", ready_line=engine.ready_line)
    except OSError as error:  # no such interpreter, not executable: the engine cannot be started at all
        raise LaunchFailed(CellError("launch_failed", f"cannot start {command.argv[0]}: {error.strerror or error}",
                                     "")) from None
    set_api_key(command.base_url, api_key_of(command.argv))
    sampler = PeakSampler(measured_devices, interval_s=options.sample_interval_s, pid=lambda: server.pid)
    try:  # from here on, whatever happens (a signal included), the finally below tears the server down
        sampler.start()
        _measure(cell, engine, server, cell_dir, options, measured)
    except KeyboardInterrupt:
        interrupted = True
        measured.error = CellError("interrupted", "interrupted (a signal: Ctrl-C, SIGTERM or SIGHUP)",
                                   log_tail(server))
    except Exception as error:  # noqa: BLE001 - a harness bug: this cell fails, with what it measured
        measured.error = internal_error(error)
    finally:
        stopped = _teardown_shielded(server, cell)
        peaks = sampler.stop()
        release = wait_until_released(measured_devices, used_before, timeout_s=cell.timeouts.teardown_s)
        set_api_key(command.base_url, None)
    measured.timings.update(teardown_s=stopped.elapsed_s, release_wait_s=release["waited_s"],
                            total_s=round(time.monotonic() - start, 3))
    result = _assemble(cell, engine, server, measured, stopped, peaks, sampler.source, release, started_at, options,
                       devices)
    if interrupted:
        raise CellInterrupted(result)
    return result


def _teardown_shielded(server: ServerProcess, cell: Cell):
    """Teardown that a second interrupt cannot cut short: it is started again, as many times as it takes."""
    while True:
        try:
            return teardown(server, grace_s=min(5.0, cell.timeouts.teardown_s / 3))
        except KeyboardInterrupt:
            continue


def server_command(engine: Engine, cell: Cell, *, python: str, port: int, devices: list[int],
                   api_key: str | None = None) -> ServerCommand:
    """The engine's command for the cell, with `--api-key` when harness is given one (SGLang and vLLM)."""
    command = engine.command(cell, python=python, port=port, devices=devices)
    if api_key:
        from harness.errors import ConfigError

        if not engine.takes_api_key:
            raise ConfigError(f"--api-key: the {engine.name} engine takes no API key")
        command = dataclasses.replace(command, argv=(*command.argv, "--api-key", api_key))
    return command


def with_pythonpath_first(command: ServerCommand, paths: tuple[str, ...]) -> ServerCommand:
    """The command with `paths` ahead of the PYTHONPATH it would have had (its own, else harness's), so that
    the server imports the engine from them first."""
    if not paths:
        return command
    inherited = command.env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    value = os.pathsep.join([*paths, *([inherited] if inherited else [])])
    return dataclasses.replace(command, env={**command.env, "PYTHONPATH": value})


def api_key_of(argv: tuple[str, ...]) -> str | None:
    """The value of the server's last --api-key (argparse's rule), which every request to it must carry."""
    found = None
    for index, arg in enumerate(argv):
        if arg == "--api-key" and index + 1 < len(argv):
            found = argv[index + 1]
        elif arg.startswith("--api-key="):
            found = arg.split("=", 1)[1]
    return found


def _measure(cell: Cell, engine: Engine, server: ServerProcess, cell_dir: Path, options: RunOptions,
             measured: _Measured) -> None:
    outcome = wait_ready(server, health_paths=engine.health_paths, needs_ready_line=engine.ready_line is not None,
                         timeout_s=cell.timeouts.launch_s)
    measured.timings["launch_to_ready_s"] = round(outcome.elapsed_s, 3)
    if not outcome.ready:
        measured.error = _failure(server, cell, exited=outcome.reason == "exited", timed_out=outcome.reason == "timeout")
        return
    base_url = server.command.base_url
    measured.engine = {**engine_version(engine, cell.python or options.python, base_url), "kernels": cell.kernels}
    # A cell without evals checks that its server loads: there is no decoding to read speculative figures of.
    reads_spec = cell.spec != "none" and bool(cell.evals)
    spec_before = engine.spec_state(base_url) if reads_spec else None
    eval_start = time.monotonic()
    try:
        with deadline(eval_start + cell.timeouts.eval_s):  # every request of every eval ends by then
            measured.evals = options.evaluator(cell, base_url, cell_dir)
    except EvalInfraError as problem:
        measured.evals = problem.partial
        died = problem.cause != "eval_timeout" and _exits_soon(server)
        measured.error = (_failure(server, cell, exited=True) if died
                          else CellError(problem.cause, str(problem), log_tail(server)))
    measured.timings["eval_s"] = round(time.monotonic() - eval_start, 3)
    if measured.error is None and measured.timings["eval_s"] > cell.timeouts.eval_s:
        measured.error = CellError("eval_timeout", f"the evals took {measured.timings['eval_s']:.0f} s, "
                                   f"over timeouts.eval_s = {cell.timeouts.eval_s:.0f} s", log_tail(server))
    if reads_spec and server.alive():
        spec_after = engine.spec_state(base_url)
        measured.spec_states = {"before": spec_before, "after": spec_after,
                                 "per_request": engine.spec_probe(base_url, spec_probe_prompts())}
        measured.accept_length = engine.accept_length(spec_before, spec_after)
    if measured.error is None and not server.alive():
        measured.error = _failure(server, cell, exited=True)


def spec_probe_prompts(count: int = 8) -> list[str]:
    """A few fixed prompts for the per-request speculative cross-check (read after the server's average)."""
    from harness.local.problems import held_out_rows

    return [f"Question: {row['question']}\nAnswer:" for row in held_out_rows(count)]


def _exits_soon(server: ServerProcess, within_s: float = 3.0) -> bool:
    """Whether the server is dying: a failed request often arrives just before its exit."""
    try:
        server.process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def _failure(server: ServerProcess, cell: Cell, *, exited: bool, timed_out: bool = False) -> CellError:
    if exited:
        server.watcher.join(timeout=1.0)  # let the last lines of a dying server reach the file
    lines = server.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    failure = classify(lines, exited=exited, timed_out=timed_out)
    if failure is None:  # alive and nothing in the log: the launcher stopped waiting for another reason
        return CellError("crash", "the server stopped answering", log_tail(server))
    message = failure.message
    if failure.cause == "launch_failed":
        message += "; " + missing_engine_hint(server.command.argv[0], cell.python is not None)
    return CellError(failure.cause, message, log_tail(server))


def _assemble(cell: Cell, engine: Engine, server: ServerProcess, measured: _Measured, stopped: Any,
              peaks: dict[str, float], source: str, release: dict[str, Any], started_at: str,
              options: RunOptions, devices: list[int]) -> CellResult:
    log_lines = server.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    report = engine.parse_log(log_lines)
    report.device_peak_gib = peaks
    report.sampler = source
    report.shared_device = not options.exclusive_devices
    error = measured.error
    if error is None and stopped.survivors:
        error = CellError("teardown_survivors", f"processes survived teardown: {list(stopped.survivors)}",
                          log_tail(server))
    memory_report = report.to_dict()
    memory_report["release"] = release
    probe = server.log_path.parent / "torch_memory.json"
    if probe.exists():  # written by harness/engines/probes/sitecustomize.py inside the server
        memory_report["torch_max_memory_allocated_gib"] = json.loads(probe.read_text())["max_memory_allocated_gib"]
    return CellResult(
        cell_id=cell.id, suite=cell.suite, status=STATUS_OK if error is None else STATUS_INFRA_ERROR,
        cell=cell.resolved(), evals=measured.evals, memory=report.gated(), memory_report=memory_report,
        accept_length=measured.accept_length, spec=measured.spec_states, timings=measured.timings,
        machine={**options.machine, "devices": list(devices)},
        engine=measured.engine or {"name": engine.name, "version": None, "commit": None, "kernels": cell.kernels},
        error=error, started_at=started_at, finished_at=now_iso(),
    )
