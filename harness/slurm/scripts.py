"""The sbatch scripts of a Slurm run and its record (reports/<run>.slurm/submission.json): pure text and data.

A run of N shards is laid out at submission, before anything runs:

    reports/<run>-shard<k>of<N>/plan.json    each shard's cells (the existing split); its array task finishes it
    reports/<run>.slurm/                     shards.sbatch, merge.sbatch, submission.json, logs/
    reports/<run>/                           the merged run, written by the dependent (afterany) merge job

Since every shard's plan exists before its task starts, a task that never ran (lost, cancelled while pending)
leaves its cells MISSING in the merge, never a pass; and finishing a shard is `harness run --resume` on it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

RECORD_KIND = "harness.slurm_submission"
RECORD_FILE = "submission.json"
SHARDS_SCRIPT = "shards.sbatch"
# The variables Slurm sets for a job's GPUs; the task script hands the allocation to harness (`--gpus`) and
# clears them, so that harness's own per-cell pinning is the only one (a ROCR_VISIBLE_DEVICES left in place
# would renumber the devices under HIP_VISIBLE_DEVICES).
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")
ENV_DEFAULTS = {"partition": "HARNESS_SLURM_PARTITION", "account": "HARNESS_SLURM_ACCOUNT",
                "time": "HARNESS_SLURM_TIME", "gpus_per_node": "HARNESS_SLURM_GPUS_PER_NODE"}


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how the tasks run: flags, else HARNESS_SLURM_* variables, else the cluster's defaults."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None  # sbatch's --time, e.g. 8:00:00
    gpus_per_node: int | None = None  # --gres=gpu:G for every shard task

    @classmethod
    def resolve(cls, flags: Mapping[str, Any], environ: Mapping[str, str] = os.environ,
                suite: Mapping[str, Any] | None = None) -> SlurmOptions:
        """A flag, else the HARNESS_SLURM_* variable (the site's), else the suite's `slurm:` (checked there)."""
        values: dict[str, Any] = {}
        for name, variable in ENV_DEFAULTS.items():
            value = flags.get(name)
            source = f"--{name.replace('_', '-')}"
            if value is None and environ.get(variable):
                value, source = environ[variable], variable
            if value is None:
                value = (suite or {}).get(name)
            if name == "gpus_per_node" and value is not None:
                try:
                    value = int(value)
                except ValueError:
                    raise ConfigError(f"{source} {value!r}: expected a number of GPUs") from None
                if value < 0:
                    raise ConfigError(f"{source} {value}: expected 0 or more GPUs")
            values[name] = value
        return cls(**values)

    def directives(self) -> list[str]:
        lines = [f"--{key}={value}" for key, value in (("partition", self.partition), ("account", self.account),
                                                        ("time", self.time)) if value]
        return lines


@dataclass
class Attempt:
    """One submission of shards (the first, or a resume): the jobs and the merged run they write."""

    indices: list[int]  # 1-based shard numbers, the array's task ids
    merged_run_id: str
    array_job: str | None = None
    merge_job: str | None = None
    submitted_at: str | None = None


@dataclass
class Submission:
    """reports/<run>.slurm/submission.json: what was submitted, so that waiting, gating and resuming need no
    Slurm accounting."""

    suite: str
    run_id: str
    shard_dirs: list[str]  # absolute, shard k at k - 1
    workdir: str
    harness: list[str]  # the argv that starts harness on a node (this Python, -m harness)
    task_args: list[str]  # flags every task's `harness run --resume` gets
    merge_args: list[str]  # flags the merge gets
    options: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": RECORD_KIND, "schema_version": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, document: dict[str, Any], source: str) -> Submission:
        if document.get("kind") != RECORD_KIND:
            raise ConfigError(f"{source}: not a Slurm submission record (kind {document.get('kind')!r})")
        body = {key: value for key, value in document.items() if key not in ("kind", "schema_version")}
        try:
            attempts = [Attempt(**attempt) for attempt in body.pop("attempts", [])]
            return cls(**body, attempts=attempts)
        except TypeError as error:
            raise ConfigError(f"{source}: {error}") from None

    @property
    def slurm_options(self) -> SlurmOptions:
        return SlurmOptions(**self.options)


def record_dir(reports_dir: Path, run_id: str) -> Path:
    return reports_dir / f"{run_id}.slurm"


def shard_run_id(run_id: str, index: int, count: int) -> str:
    return f"{run_id}-shard{index}of{count}"  # as `harness run --shard k/n` names its runs


def _header(job_name: str, output: Path, options: SlurmOptions, extra: list[str]) -> list[str]:
    directives = [f"--job-name={job_name}", f"--output={output}", "--ntasks=1", *options.directives(), *extra]
    return ["#!/bin/bash", *(f"#SBATCH {shlex.quote(d)}" for d in directives)]


def shards_script(submission: Submission, indices: list[int], record: Path) -> str:
    """The job array: task k finishes shard k's run directory with `harness run --resume`, on the GPUs Slurm
    gave it. `exec`: harness is the task's process, so scancel's SIGTERM reaches its interrupt path."""
    options = submission.slurm_options
    gres = [f"--gres=gpu:{options.gpus_per_node}"] if options.gpus_per_node else []
    lines = _header(f"harness-{submission.suite}-shards", record / "logs" / "shard-%a.out", options,
                    [f"--array={','.join(map(str, indices))}", *gres])
    lines += ["# harness run --executor slurm: one array task per shard, each writing its own run directory.",
              "set -u", "shards=("]
    lines += [f"  [{index}]={shlex.quote(path)}" for index, path in enumerate(submission.shard_dirs, start=1)]
    lines += [")", 'shard=${shards[$SLURM_ARRAY_TASK_ID]}']
    gpus = ""
    if options.gpus_per_node:
        lines += ["# Slurm's allocation, handed to harness, which pins each cell to its share itself.",
                  "gpus=${CUDA_VISIBLE_DEVICES-}", f"unset {' '.join(GPU_VARIABLES)}"]
        gpus = ' ${gpus:+--gpus "$gpus"}'
    lines += ['echo "harness: slurm task $SLURM_ARRAY_TASK_ID (job $SLURM_ARRAY_JOB_ID) on $(hostname): '
              + ('GPUs ${gpus:-none}' if options.gpus_per_node else 'no GPUs requested') + ', $shard"',
              f"cd {shlex.quote(submission.workdir)}",
              f'exec {shlex.join(submission.harness)} run --resume "$shard"{gpus} {shlex.join(submission.task_args)}']
    return "\n".join(lines) + "\n"


def merge_script(submission: Submission, attempt: Attempt, record: Path) -> str:
    """The dependent job (afterany: it runs however the tasks ended): merge every shard, gate, report."""
    options = submission.slurm_options
    lines = _header(f"harness-{submission.suite}-merge", record / "logs" / f"merge-{attempt.merged_run_id}.out",
                    options, [])
    lines += ["# Merges every shard (a shard whose task never ran shows its cells MISSING), gates, reports.",
              "set -u", f"cd {shlex.quote(submission.workdir)}",
              f"exec {shlex.join(submission.harness)} merge {shlex.join(submission.shard_dirs)} "
              f"--run-id {shlex.quote(attempt.merged_run_id)} {shlex.join(submission.merge_args)}"]
    return "\n".join(lines) + "\n"


def parse_job_id(text: str) -> str:
    """`sbatch --parsable` prints "<job id>[;<cluster>]"."""
    job = text.strip().splitlines()[-1].split(";")[0].strip() if text.strip() else ""
    if not job.isdigit():
        raise ValueError(f"sbatch printed no job id: {text.strip()!r}")
    return job


def parse_squeue(text: str) -> dict[str, str]:
    """`squeue -h -o '%i %T'` lines -> job or task id: state. A job squeue no longer lists has ended."""
    states = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            states[parts[0]] = parts[1]
    return states
