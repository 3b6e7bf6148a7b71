"""`harness run --executor slurm`: submit a suite's shards as one job array and a dependent merge job, wait,
and exit with the merged run's code (harness.slurm.scripts lays the run out). Cancelling (scancel, or Ctrl-C
of the waiting harness) reaches the tasks as SIGTERM, harness's interrupt path; the merge job, `afterany`, still
merges and reports, the cells not run as MISSING. `--resume reports/<run>.slurm` submits again only the shards
that did not finish.

What the run's outcome is comes from the run directories, never from Slurm's accounting: without slurmdbd,
sacct knows no job, but squeue still says whether a job is queued, and the merged run says how it ended.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import schema
from harness.errors import EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, ConfigError, InfraError, worst_exit_code
from harness.pipeline import (
    RunRequest,
    checked_run_id,
    make_run_dir,
    new_run_id,
    plan,
    recorded_exit_code,
    say,
    with_kernels,
)
from harness.pipeline import shards as split
from harness.report.format import plural
from harness.slurm import client
from harness.slurm.scripts import (
    RECORD_FILE,
    SHARDS_SCRIPT,
    Attempt,
    SlurmOptions,
    Submission,
    merge_script,
    record_dir,
    shard_run_id,
    shards_script,
)

QUERY_ATTEMPTS = 5  # squeue failing this many polls in a row ends the wait (exit 3; the jobs go on)


@dataclass(frozen=True)
class SlurmRun:
    request: RunRequest
    options: SlurmOptions
    shards: int | None = None
    detach: bool = False
    poll_s: float = float(os.environ.get("HARNESS_SLURM_POLL_S", "2"))


def run(slurm: SlurmRun) -> int:
    """Submit (or resubmit the unfinished shards of) a Slurm run; wait for it unless detached."""
    request = slurm.request
    if request.resume:
        return _resume(slurm)
    if request.shard or request.gpus:
        raise ConfigError("--executor slurm: --shards N splits the suite and Slurm gives each task its GPUs; "
                          "drop --shard/--gpus")
    assert request.suite is not None  # the command line asks for a suite or --resume (as pipeline's fresh plan)
    the_plan = plan(request.suite, suites_dir=request.suites_dir, baselines_dir=request.baselines_dir,
                    cell_patterns=request.cells)
    if request.kernels:  # each shard's plan.json keeps it: its task resumes with the same kernels
        the_plan = with_kernels(the_plan, request.kernels)
    parts = [part for part in split(the_plan, slurm.shards or 1, request.durations_from) if part.cells]
    run_id = checked_run_id(request.run_id) or new_run_id(the_plan.suite.name)
    reports = request.reports_dir.resolve()
    submission = Submission(
        suite=the_plan.suite.name, run_id=run_id, workdir=str(Path.cwd()),
        shard_dirs=[str(reports / shard_run_id(run_id, part.index, part.count)) for part in parts],
        harness=[sys.executable, "-m", "harness"], task_args=_task_args(request), merge_args=_dirs(request),
        options=slurm.options.__dict__.copy())
    attempt = Attempt(indices=list(range(1, len(parts) + 1)), merged_run_id=run_id)
    record = record_dir(reports, run_id)
    if request.dry_run:
        return _print_scripts(submission, attempt, record)
    for path in (record, reports / run_id):
        if path.exists():
            raise ConfigError(f"{path}: a run with this id exists already; choose another --run-id")
    _lay_out_shards(submission, parts, request.kernels)
    (record / "logs").mkdir(parents=True)
    say(f"slurm: run {run_id}: {plural(len(parts), 'shard')} of suite {submission.suite} "
        f"({plural(sum(len(p.cells) for p in parts), 'cell')}), record {record}")
    _submit(submission, attempt, record, request.api_key)
    return _detached(submission, attempt, record) if slurm.detach else _wait(submission, attempt, record, slurm)


def _dirs(request: RunRequest) -> list[str]:
    return ["--suites-dir", str(request.suites_dir.resolve()), "--baselines-dir",
            str(request.baselines_dir.resolve()), "--reports-dir", str(request.reports_dir.resolve())]


def _task_args(request: RunRequest) -> list[str]:
    """What every task's `harness run --resume SHARD` is given besides its shard (never the API key: that
    travels in the environment sbatch exports, not in a script on disk)."""
    args = _dirs(request)
    for flag, value in (("--python", request.python), ("--engine-version", request.engine_version),
                        ("--max-parallel", request.max_parallel)):
        if value is not None:
            args += [flag, str(value)]
    if request.share_gpus != 1:
        args += ["--share-gpus", str(request.share_gpus)]
    if not request.preflight:
        args.append("--no-preflight")
    if request.force_reference_kernels:
        args.append("--force-reference-kernels")
    if request.retry_failed:
        args.append("--retry-failed")
    return args


def _lay_out_shards(submission: Submission, parts, kernels: str | None) -> None:
    """Each shard's run directory and plan.json, before any task starts."""
    from harness import rundir

    for path, part in zip(submission.shard_dirs, parts):
        shard_dir = make_run_dir(Path(path).parent, Path(path).name)
        rundir.write_plan(shard_dir, run_id=shard_dir.name, suite=submission.suite,
                          cells=[cell.id for cell in part.cells], shard=part.label, kernels=kernels)


def _print_scripts(submission: Submission, attempt: Attempt, record: Path) -> int:
    print(f"# {record / SHARDS_SCRIPT}  (sbatch --parsable {record / SHARDS_SCRIPT})")
    print(shards_script(submission, attempt.indices, record))
    merge = record / f"merge-{attempt.merged_run_id}.sbatch"
    print(f"# {merge}  (sbatch --parsable --dependency=afterany:<the array's job id> {merge})")
    print(merge_script(submission, attempt, record))
    print(f"# nothing submitted; {plural(len(attempt.indices), 'shard')}: "
          + ", ".join(Path(submission.shard_dirs[i - 1]).name for i in attempt.indices))
    return EXIT_OK


def _submit(submission: Submission, attempt: Attempt, record: Path, api_key: str | None) -> None:
    """Write the scripts, submit the array then its afterany merge, and keep the record (saved before the
    merge is submitted, so that a failure in between leaves what was submitted on disk)."""
    env = {**os.environ, **({"HARNESS_API_KEY": api_key} if api_key else {})}
    submission.attempts.append(attempt)
    merge = record / f"merge-{attempt.merged_run_id}.sbatch"
    merge.write_text(merge_script(submission, attempt, record))
    dependency = None
    if attempt.indices:
        shards = record / SHARDS_SCRIPT
        shards.write_text(shards_script(submission, attempt.indices, record))
        attempt.array_job = client.sbatch(shards, env=env)
        attempt.submitted_at = _now()
        _save(submission, record)
        dependency = f"afterany:{attempt.array_job}"
    attempt.merge_job = client.sbatch(merge, dependency=dependency, env=env)
    attempt.submitted_at = attempt.submitted_at or _now()
    _save(submission, record)
    say(f"slurm: submitted {plural(len(attempt.indices), 'shard task')} (job {attempt.array_job or '-'}) and "
        f"the merge (job {attempt.merge_job}, afterany)")


def _now() -> str:
    from harness.results import now_iso

    return now_iso()


def _save(submission: Submission, record: Path) -> None:
    schema.write_json(record / RECORD_FILE, submission.to_dict())


def _load(record: Path) -> Submission:
    path = record / RECORD_FILE
    if not path.exists():
        raise ConfigError(f"{record}: no {RECORD_FILE} (--executor slurm --resume takes reports/<run>.slurm)")
    return Submission.from_dict(schema.read_document(path), str(path))


def _detached(submission: Submission, attempt: Attempt, record: Path) -> int:
    print(f"shards job: {attempt.array_job or '-'}\nmerge job: {attempt.merge_job}")
    print(f"gate it once the merge job has ended (squeue -j {attempt.merge_job} lists nothing):\n"
          f"  harness gate {Path(submission.shard_dirs[0]).parent / attempt.merged_run_id}")
    print(f"resume the shards that did not finish:\n  harness run --resume {record} --executor slurm")
    return EXIT_OK


def _jobs_state(attempt: Attempt) -> tuple[dict[str, str], dict[str, str]]:
    tasks = client.queued(attempt.array_job) if attempt.array_job else {}
    return tasks, client.queued(attempt.merge_job) if attempt.merge_job else {}


def _describe(tasks: dict[str, str], merge: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for state in tasks.values():
        counts[state] = counts.get(state, 0) + 1
    shards = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "all ended"
    return f"shard tasks: {shards}; merge: {next(iter(merge.values()), 'ended').lower()}"


def _wait(submission: Submission, attempt: Attempt, record: Path, slurm: SlurmRun) -> int:
    """Until the merge job has ended. A first Ctrl-C (or SIGTERM) cancels the shard tasks and keeps waiting
    for the merge, which reports what they measured."""
    say(f"slurm: waiting for job {attempt.merge_job} (Ctrl-C cancels the shard tasks; the merge still reports)")
    interrupted, last, failures = False, "", 0
    while True:
        try:
            try:
                tasks, merge = _jobs_state(attempt)
                failures = 0
            except InfraError as error:  # slurmctld busy or restarting: a few polls before giving up
                failures += 1
                if failures >= QUERY_ATTEMPTS:
                    raise
                say(f"slurm: {error}; asking again")
                time.sleep(slurm.poll_s)
                continue
            line = _describe(tasks, merge)
            if line != last:
                say(f"slurm: {line}")
                last = line
            if not merge:
                break
            time.sleep(slurm.poll_s)
        except KeyboardInterrupt:
            if interrupted:
                continue
            interrupted = True
            say("slurm: interrupted: cancelling the shard tasks (SIGTERM: each tears its servers down and keeps "
                "what it measured); waiting for the merge job to report")
            if attempt.array_job:
                client.scancel(attempt.array_job)
    return _conclude(submission, attempt, record, interrupted)


def _conclude(submission: Submission, attempt: Attempt, record: Path, interrupted: bool) -> int:
    """The merged run's code (3 when the merge wrote none), 130 folded in when any shard was interrupted."""
    from harness.compare import Verdict
    from harness.history import RESULTS_FILE, open_run
    from harness.report import render_console

    merged = Path(submission.shard_dirs[0]).parent / attempt.merged_run_id
    log = record / "logs" / f"merge-{attempt.merged_run_id}.out"
    if not (merged / RESULTS_FILE).exists():
        tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else ["(no log)"]
        say(f"slurm: the merge job wrote no run ({merged}); its log ends:\n  " + "\n  ".join(tail))
        code = EXIT_INFRA
    else:
        code, _ = recorded_exit_code(merged)
        run_result = open_run(merged)
        print(render_console([Verdict.from_dict(v) for v in run_result.verdicts], code), end="")
        interrupted = interrupted or any(c.error is not None and c.error.cause == "interrupted"
                                         for c in run_result.cells)
    unfinished = _unfinished(submission, retry_failed=False)
    print(f"reports: {merged}/ (merged from {plural(len(submission.shard_dirs), 'shard')}; Slurm logs: {record}/logs)")
    if unfinished:
        say(f"slurm: {plural(len(unfinished), 'shard')} did not finish; resume them: harness run --resume {record} "
            f"--executor slurm")
    return worst_exit_code([code, *([EXIT_INTERRUPTED] if interrupted else [])])


def _unfinished(submission: Submission, *, retry_failed: bool) -> list[int]:
    """The shards (1-based) with a planned cell that has no finished result."""
    from harness import rundir
    from harness.history import read_cells, read_plan

    unfinished = []
    for index, path in enumerate(submission.shard_dirs, start=1):
        shard = Path(path)
        results = read_cells(shard)
        if not all(cell in results and rundir.finished(results[cell], retry_failed=retry_failed)
                   for cell in read_plan(shard)["cells"]):
            unfinished.append(index)
    return unfinished


def _resume(slurm: SlurmRun) -> int:
    request = slurm.request
    assert request.resume is not None
    if request.suite or request.shard or request.cells or request.run_id or slurm.shards:
        raise ConfigError("--resume with --executor slurm: the record decides the shards; drop "
                          "--suite/--shard(s)/--cell/--run-id")
    record = request.resume
    submission = _load(record)
    last = submission.attempts[-1] if submission.attempts else None
    if last is not None and any(_jobs_state(last)):
        raise ConfigError(f"{record}: job {last.array_job or last.merge_job} is still queued or running; "
                          f"resume once it has ended")
    indices = _unfinished(submission, retry_failed=request.retry_failed)
    if request.retry_failed and "--retry-failed" not in submission.task_args:
        submission.task_args.append("--retry-failed")
    attempt = Attempt(indices=indices, merged_run_id=f"{submission.run_id}-attempt{len(submission.attempts) + 1}")
    if request.dry_run:
        return _print_scripts(submission, attempt, record)
    say(f"slurm: resuming {submission.run_id}: " + (
        f"shards {', '.join(map(str, indices))} of {len(submission.shard_dirs)} did not finish" if indices
        else "every shard finished; merging again"))
    _submit(submission, attempt, record, request.api_key)
    return _detached(submission, attempt, record) if slurm.detach else _wait(submission, attempt, record, slurm)
