"""submitit 1.5.4 against sbatch/squeue (what `harness run --executor slurm` uses), on a real cluster.

    make slurm-up && export SLURM_CONF=/tmp/harness-slurm/etc/slurm.conf
    python benchmarks/bench_slurm.py [--repeat 3] [--no-accounting-check]
    python benchmarks/bench_slurm.py --record reports/<run>.slurm   # a `harness run --executor slurm`'s figures

Per way of submitting, a two-task array of a one-second command and an afterany job after it: the wall time
of submitting, each task's submit-to-start (sacct), and when the waiting side learns the dependent job ended.
Then the fact the choice turns on: with slurmdbd stopped, submitit's job state (it asks only sacct) and its
done() for a job that has ended, against squeue's answer. The accounting check stops and restarts slurmdbd by
its pid file (tools/slurm/cluster.sh's layout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLURM_DIR = Path(os.environ.get("HARNESS_SLURM_DIR", "/tmp/harness-slurm"))


def sacct_times(jobs: list[str]) -> list[dict[str, str]]:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(jobs), "-o", "JobID,State,Submit,Start,End"],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(("id", "state", "submit", "start", "end"), line.split("|"))) for line in out.splitlines()]


def seconds(a: str, b: str) -> float:
    return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()


def gone(job: str) -> bool:
    done = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
    return done.returncode != 0 or not done.stdout.strip()


def wait_gone(job: str, timeout_s: float = 120) -> float:
    start = time.monotonic()
    while not gone(job):
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(job)
        time.sleep(0.1)
    return time.monotonic()


def with_sbatch(folder: Path) -> dict[str, float]:
    script = folder / "task.sbatch"
    script.write_text(f"#!/bin/bash\n#SBATCH --array=1,2\n#SBATCH --output={folder}/%a.out\nsleep 1\n")
    merge = folder / "merge.sbatch"
    merge.write_text(f"#!/bin/bash\n#SBATCH --output={folder}/merge.out\ntrue\n")
    t0 = time.monotonic()
    array = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True,
                           check=True).stdout.strip()
    after = subprocess.run(["sbatch", "--parsable", f"--dependency=afterany:{array}", str(merge)],
                           capture_output=True, text=True, check=True).stdout.strip()
    submitted = time.monotonic()
    learned = wait_gone(after)
    return {"submit_s": submitted - t0, "learned_end_s": learned - t0, **_sacct(array, after)}


def _sacct(array: str, after: str) -> dict[str, float]:
    time.sleep(1.5)  # slurmdbd takes the last records a moment after the job ends
    rows = {row["id"]: row for row in sacct_times([array, after])}
    tasks = [row for key, row in rows.items() if key.startswith(f"{array}_")]
    return {"task_submit_to_start_s": max(seconds(r["submit"], r["start"]) for r in tasks),
            "tasks_end_to_merge_start_s": seconds(max(r["end"] for r in tasks), rows[after]["start"])}


def sleep_one() -> int:
    time.sleep(1)
    return 0


def sleep_long() -> int:
    time.sleep(120)
    return 0


def with_submitit(folder: Path) -> dict[str, float]:
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=5)
    t0 = time.monotonic()
    jobs = executor.map_array(lambda _: sleep_one(), [1, 2])
    array = jobs[0].job_id.split("_")[0]
    merge = submitit.AutoExecutor(folder=folder, cluster="slurm")
    merge.update_parameters(timeout_min=5, slurm_additional_parameters={"dependency": f"afterany:{array}"})
    after = merge.submit(sleep_one)
    submitted = time.monotonic()
    after.result()  # submitit's own wait: it polls sacct
    learned = time.monotonic()
    return {"submit_s": submitted - t0, "learned_end_s": learned - t0, **_sacct(array, after.job_id)}


def accounting_check(folder: Path) -> dict[str, object]:
    """Stop slurmdbd; a job that has ended: what squeue and submitit say. Restart it."""
    import submitit

    pid_file = SLURM_DIR / "run" / "slurmdbd.pid"
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(timeout_min=5)
        finished = executor.submit(sleep_one)
        cancelled = executor.submit(sleep_long)
        while gone(cancelled.job_id) or "RUNNING" not in subprocess.run(
                ["squeue", "-h", "-j", cancelled.job_id, "-o", "%T"], capture_output=True, text=True).stdout:
            time.sleep(0.1)
        subprocess.run(["scancel", cancelled.job_id], check=True)
        wait_gone(cancelled.job_id)
        wait_gone(finished.job_id)
        time.sleep(5)
        return {"squeue_says_both_ended": True,
                "finished_job": {"submitit_state": finished.state, "submitit_done": finished.done()},
                "cancelled_job": {"submitit_state": cancelled.state, "submitit_done": cancelled.done()},
                "checked_after_s": 5}
    finally:
        subprocess.run(["slurmdbd"], check=True)
        for _ in range(100):
            if subprocess.run(["sacctmgr", "-n", "list", "cluster"], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)


def record_figures(record: Path) -> dict[str, object]:
    """Per attempt of a `harness run --executor slurm`: each task's submit-to-start and run time, the gap from
    the last task's end to the merge's start, and the merge job's own time (sacct)."""
    submission = json.loads((record / "submission.json").read_text())
    attempts = []
    for attempt in submission["attempts"]:
        jobs = [job for job in (attempt["array_job"], attempt["merge_job"]) if job]
        rows = {row["id"]: row for row in sacct_times(jobs)}
        tasks = {key: row for key, row in rows.items() if attempt["array_job"] and key.startswith(f"{attempt['array_job']}_")}
        merge = rows[attempt["merge_job"]]
        figures: dict[str, object] = {"merged_run": attempt["merged_run_id"], "shards": attempt["indices"],
                                      "merge_s": seconds(merge["start"], merge["end"])}
        if tasks:
            figures |= {
                "task_submit_to_start_s": {k: seconds(r["submit"], r["start"]) for k, r in tasks.items()},
                "task_run_s": {k: seconds(r["start"], r["end"]) for k, r in tasks.items()},
                "task_states": {k: r["state"] for k, r in tasks.items()},
                "tasks_end_to_merge_start_s": seconds(max(r["end"] for r in tasks.values()), merge["start"]),
                "submit_to_merge_end_s": seconds(min(r["submit"] for r in tasks.values()), merge["end"])}
        attempts.append(figures)
    return {"run": submission["run_id"], "attempts": attempts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-accounting-check", action="store_true")
    parser.add_argument("--record", type=Path, help="a reports/<run>.slurm directory: that run's figures")
    args = parser.parse_args()
    if args.record:
        print(json.dumps(record_figures(args.record), indent=2))
        return 0
    figures: dict[str, list[dict[str, float]]] = {"sbatch": [], "submitit": []}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        for repeat in range(args.repeat):
            for name, way in (("sbatch", with_sbatch), ("submitit", with_submitit)):
                folder = Path(tmp) / f"{name}-{repeat}"
                folder.mkdir()
                figures[name].append(way(folder))
        summary = {name: {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
                   for name, runs in figures.items()}
        if not args.no_accounting_check:
            folder = Path(tmp) / "no-accounting"
            folder.mkdir()
            summary["without_slurmdbd"] = accounting_check(folder)
    print(json.dumps({"medians_of": args.repeat, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
