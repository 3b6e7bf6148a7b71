"""`harness run --executor slurm` measured on a real one-node cluster, with the SGLang test double's suite
(tests/test_slurm.py's: four cells at TP 1 and 2, each up in about a second), so that Slurm's and harness's own
overheads are what is measured, not a model's load time.

    make slurm-up && export SLURM_CONF=/tmp/harness-slurm/etc/slurm.conf
    python benchmarks/bench_slurm_run.py [--suite local]

1. one host, then two shards on Slurm (--gpus-per-node 2): the verdicts compared, the wall times, and per task
   its submit-to-start and the merge job's overhead (sacct, benchmarks/bench_slurm.py --record);
2. a run cancelled mid-way (SIGINT to the waiting harness while a cell hangs) and resumed (the hang fixed):
   the exit codes, which shards were submitted again, and the final verdicts.
`--suite local` runs the repository's local suite instead (1. only; minutes per cell on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_slurm import record_figures  # noqa: E402
from tests.test_slurm import four_cell_suite, wait_for_a_hanging_cell  # noqa: E402


def harness(root: Path, *argv: str) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_GPU_BACKEND": "none", "HARNESS_SLURM_POLL_S": "0.5"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness", *argv, *dirs(root)], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    return done.returncode, round(time.monotonic() - start, 2), done.stderr


def dirs(root: Path) -> list[str]:
    return ["--suites-dir", str(root / "suites"), "--baselines-dir", str(root / "baselines"),
            "--reports-dir", str(root / "reports")]


def states(run_dir: Path) -> dict[str, str]:
    results = json.loads((run_dir / "results.json").read_text())
    return {f"{v['cell_id']} {v['metric']}": v["state"] for v in results["verdicts"]}


def same_verdicts(root: Path, suite: str) -> dict[str, object]:
    host_code, host_s, _ = harness(root, "run", "--suite", suite, "--run-id", "host")
    slurm_code, slurm_s, err = harness(root, "run", "--suite", suite, "--executor", "slurm", "--shards", "2",
                                       "--gpus-per-node", "2", "--run-id", "slurm")
    reports = root / "reports"
    host, slurm = states(reports / "host"), states(reports / "slurm")
    return {"one_host": {"exit": host_code, "wall_s": host_s}, "slurm": {"exit": slurm_code, "wall_s": slurm_s},
            "verdicts": len(host), "same_verdicts": host == slurm,
            "differences": {k: (host.get(k), slurm.get(k)) for k in set(host) | set(slurm) if host.get(k) != slurm.get(k)},
            "slurm_figures": record_figures(reports / "slurm.slurm")}


def cancel_and_resume(root: Path) -> dict[str, object]:
    reports = root / "reports"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_GPU_BACKEND": "none", "HARNESS_SLURM_POLL_S": "0.5"}
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", "fake", "--executor", "slurm",
                                "--shards", "2", "--run-id", "cancel", *dirs(root)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_a_hanging_cell(reports, "cancel")
    interrupted_at = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=300)
    first = {"exit": process.returncode, "wall_s": round(time.monotonic() - start, 2),
             "sigint_to_exit_s": round(time.monotonic() - interrupted_at, 2), "verdicts": states(reports / "cancel")}
    suite_file = root / "suites" / "fake.yaml"
    suite_file.write_text(suite_file.read_text().replace("hang_before_ready", "ok"))
    code, wall_s, _ = harness(root, "run", "--resume", str(reports / "cancel.slurm"), "--executor", "slurm")
    return {"cancelled": first, "resumed": {"exit": code, "wall_s": wall_s,
                                            "verdicts": states(reports / "cancel-attempt2")},
            "slurm_figures": record_figures(reports / "cancel.slurm")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("fake", "local"), default="fake")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-slurm-run-") as tmp:
        if args.suite == "local":
            root = Path(tmp)
            (root / "reports").mkdir()
            os.symlink(ROOT / "suites", root / "suites")
            os.symlink(ROOT / "baselines", root / "baselines")
            figures = {"same_verdicts": same_verdicts(root, "local")}
        else:
            for name in ("a", "b"):
                (Path(tmp) / name).mkdir()
            figures = {"same_verdicts": same_verdicts(four_cell_suite(Path(tmp) / "a", {"none": "ok", "mtp": "ok"}),
                                                      "fake"),
                       "cancel_and_resume": cancel_and_resume(four_cell_suite(Path(tmp) / "b", {
                           "none": "ok", "mtp": "hang_before_ready"}))}
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
