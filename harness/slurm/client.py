"""Slurm's client commands (sbatch, squeue, scancel, sacct), the only processes the Slurm executor starts.
They find the cluster as any Slurm client does (slurm.conf, or SLURM_CONF)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from harness.errors import InfraError
from harness.slurm.scripts import parse_job_id, parse_squeue

TIMEOUT_S = 60.0


def _run(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        raise InfraError(f"{argv[0]}: not found: --executor slurm needs Slurm's client commands "
                         f"(`make slurm-up` starts a one-node cluster on Debian)")
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise InfraError(f"{argv[0]}: no answer in {TIMEOUT_S:.0f} s (is slurmctld up?)") from None


def sbatch(script: Path, *, dependency: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Submit a script; its job id."""
    argv = ["sbatch", "--parsable", *([f"--dependency={dependency}"] if dependency else []), str(script)]
    done = _run(argv, env)
    if done.returncode != 0:
        raise InfraError(f"sbatch {script.name}: {(done.stderr or done.stdout).strip() or f'exit {done.returncode}'}")
    try:
        return parse_job_id(done.stdout)
    except ValueError as error:
        raise InfraError(f"sbatch {script.name}: {error}") from None


def queued(job: str) -> dict[str, str]:
    """The job's (or its array tasks') states while Slurm still lists them; {} once it has ended."""
    done = _run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T"])
    if done.returncode != 0:
        # squeue refuses a job id it has already forgotten ("Invalid job id specified"): the job has ended.
        if "Invalid job id" in done.stderr:
            return {}
        raise InfraError(f"squeue -j {job}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return parse_squeue(done.stdout)


def scancel(job: str) -> None:
    """Cancel a job (every array task): Slurm sends SIGTERM, then SIGKILL after the cluster's KillWait."""
    done = _run(["scancel", job])
    if done.returncode != 0:
        raise InfraError(f"scancel {job}: {done.stderr.strip() or f'exit {done.returncode}'}")


def accounting(jobs: list[str]) -> list[dict[str, str]] | None:
    """sacct's rows for the jobs (JobID, State, ExitCode, Submit, Start, End), or None without accounting:
    only measurements read them, never the verdict (which comes from the run directories)."""
    fields = ("JobID", "State", "ExitCode", "Submit", "Start", "End")
    try:
        done = _run(["sacct", "-n", "-X", "-P", "-j", ",".join(jobs), "-o", ",".join(fields)])
    except InfraError:
        return None
    if done.returncode != 0:
        return None
    return [dict(zip(fields, line.split("|"))) for line in done.stdout.splitlines() if line.strip()]
