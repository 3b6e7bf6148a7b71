"""`harness run --executor slurm` on a real one-node Slurm cluster (tools/slurm/cluster.sh, `make slurm-up`):
the same verdicts as on one host, GPUs as Slurm gives them, cancel and resume, a lost task MISSING.

The cluster is started here where it can be (root, the packages installed: installing is `make slurm-up`'s job,
never a test's) and stopped again if this session started it; elsewhere these tests skip and say why. The
scripts' text is checked without a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from harness.cli import main
from harness.slurm.scripts import SlurmOptions, parse_job_id, parse_squeue
from tests.conftest import ROOT
from tests.test_launcher import assert_nothing_survives
from tests.test_run_cli import dirs, fake_suite

CLUSTER = ROOT / "tools" / "slurm" / "cluster.sh"
SLURM_DIR = Path(os.environ.get("HARNESS_SLURM_DIR", "/tmp/harness-slurm"))
DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sbatch")


def _reachable(env: dict[str, str]) -> bool:
    return shutil.which("scontrol") is not None and subprocess.run(
        ["scontrol", "ping"], env=env, capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def slurm():
    """SLURM_CONF of a running one-node cluster: the one `make slurm-up` started, else one started here."""
    env = {**os.environ, "SLURM_CONF": os.environ.get("SLURM_CONF", str(SLURM_DIR / "etc" / "slurm.conf"))}
    started = False
    if not _reachable(env):
        missing = [tool for tool in DAEMONS if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"no Slurm here ({', '.join(missing)} missing): `make slurm-up` installs and starts it "
                        f"(Debian, as root)")
        if os.geteuid() != 0:
            pytest.skip("the one-node Slurm cluster starts as root (munged as user munge): `make slurm-up`")
        done = subprocess.run(["bash", str(CLUSTER), "up", str(SLURM_DIR)], capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr
        env["SLURM_CONF"], started = str(SLURM_DIR / "etc" / "slurm.conf"), True
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        yield env
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if started:
            subprocess.run(["bash", str(CLUSTER), "down", str(SLURM_DIR)], capture_output=True, timeout=180)


def four_cell_suite(tmp_path: Path, scenario_by_spec: dict[str, str]) -> Path:
    """The fake SGLang suite (tests/test_run_cli.py) at TP 1 and 2: cells that start in about a second."""
    root = fake_suite(tmp_path, scenario_by_spec, launch_s=120)
    suite_file = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(suite_file.read_text())
    suite["matrix"]["tp"] = [1, 2]
    suite_file.write_text(yaml.safe_dump(suite))
    return root


def states(run_dir: Path) -> dict[tuple[str, str], str]:
    results = json.loads((run_dir / "results.json").read_text())
    return {(v["cell_id"], v["metric"]): v["state"] for v in results["verdicts"]}


def harness(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(ROOT), "HARNESS_SLURM_POLL_S": "0.5",
                               "HARNESS_GPU_BACKEND": "none"})


# --- without a cluster ------------------------------------------------------------------------------------

def test_dry_run_prints_both_scripts_and_submits_nothing(tmp_path, capsys):
    root = four_cell_suite(tmp_path, {"none": "ok", "mtp": "ok"})
    assert main(["run", "--suite", "fake", "--executor", "slurm", "--shards", "2", "--gpus-per-node", "2",
                 "--partition", "gpu", "--time", "2:00:00", "--run-id", "r", "--dry-run", *dirs(root)]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=1,2" in out and "#SBATCH --gres=gpu:2" in out and "#SBATCH --partition=gpu" in out
    assert "#SBATCH --time=2:00:00" in out and "--dependency=afterany:" in out
    assert 'run --resume "$shard" ${gpus:+--gpus "$gpus"}' in out and "unset CUDA_VISIBLE_DEVICES" in out
    assert f"merge {root / 'reports' / 'r-shard1of2'} {root / 'reports' / 'r-shard2of2'} --run-id r" in out
    assert not (root / "reports").exists()


def test_slurm_options_come_from_flags_then_the_environment(tmp_path, capsys):
    environ = {"HARNESS_SLURM_PARTITION": "mi300x", "HARNESS_SLURM_GPUS_PER_NODE": "8"}
    options = SlurmOptions.resolve({"partition": None, "gpus_per_node": None, "time": "1:00:00"}, environ)
    assert options == SlurmOptions(partition="mi300x", gpus_per_node=8, time="1:00:00")
    assert SlurmOptions.resolve({"partition": "flag"}, environ).partition == "flag"
    root = four_cell_suite(tmp_path, {"none": "ok"})
    os.environ["HARNESS_SLURM_GPUS_PER_NODE"] = "eight"
    try:
        assert main(["run", "--suite", "fake", "--executor", "slurm", "--dry-run", *dirs(root)]) == 2
    finally:
        del os.environ["HARNESS_SLURM_GPUS_PER_NODE"]
    assert "HARNESS_SLURM_GPUS_PER_NODE 'eight': expected a number of GPUs" in capsys.readouterr().err
    assert main(["run", "--suite", "fake", "--shards", "2", *dirs(root)]) == 2
    assert "--shards: only with --executor slurm" in capsys.readouterr().err
    # The suite's own defaults, below a flag and the site's variables; a misspelt key is an error, not ignored.
    suite_file = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(suite_file.read_text())
    suite_file.write_text(yaml.safe_dump({**suite, "slurm": {"gpus_per_node": 4, "partition": "suite-part"}}))
    os.environ["HARNESS_SLURM_PARTITION"] = "site-part"
    try:
        assert main(["run", "--suite", "fake", "--executor", "slurm", "--dry-run", *dirs(root)]) == 0
    finally:
        del os.environ["HARNESS_SLURM_PARTITION"]
    out = capsys.readouterr().out
    assert "#SBATCH --gres=gpu:4" in out and "#SBATCH --partition=site-part" in out
    suite_file.write_text(yaml.safe_dump({**suite, "slurm": {"gpus_per_nod": 4}}))
    assert main(["run", "--suite", "fake", "--executor", "slurm", "--dry-run", *dirs(root)]) == 2
    assert "slurm.gpus_per_nod: unknown key 'gpus_per_nod'; did you mean 'gpus_per_node'?" in capsys.readouterr().err


def test_slurm_command_outputs_parse():
    assert parse_job_id("1234\n") == "1234" and parse_job_id("77;harness\n") == "77"
    with pytest.raises(ValueError):
        parse_job_id("sbatch: error: Batch job submission failed\n")
    assert parse_squeue("12_1 RUNNING\n12_2 PENDING\n") == {"12_1": "RUNNING", "12_2": "PENDING"}


# --- on the cluster ---------------------------------------------------------------------------------------

def test_two_shards_on_slurm_give_the_verdicts_of_one_host(tmp_path, slurm):
    root = four_cell_suite(tmp_path, {"none": "ok", "mtp": "ok"})
    one_host = harness("run", "--suite", "fake", "--run-id", "here", *dirs(root), env=slurm)
    assert one_host.returncode == 0, one_host.stderr
    done = harness("run", "--suite", "fake", "--executor", "slurm", "--shards", "2", "--gpus-per-node", "2",
                   "--run-id", "there", *dirs(root), env=slurm)
    assert done.returncode == 0, done.stderr
    reports = root / "reports"
    assert states(reports / "there") == states(reports / "here")
    assert len(states(reports / "there")) >= 4
    # Each task got its own two of the node's four gres GPUs, and harness packed its cells onto those.
    logs = sorted((reports / "there.slurm" / "logs").glob("shard-*.out"))
    given = [next(line for line in log.read_text().splitlines() if "slurm task" in line) for log in logs]
    gpus = sorted(line.split("GPUs ")[1].split(",")[0:2] for line in given)
    assert len(gpus) == 2 and set(gpus[0]).isdisjoint(gpus[1]), given
    for shard in ("there-shard1of2", "there-shard2of2"):
        for cell in json.loads((reports / shard / "results.json").read_text())["cells"]:
            assert {str(d) for d in cell["machine"]["devices"]} <= set(sum(gpus, [])), cell["machine"]["devices"]
    assert_nothing_survives(tmp_path)


def test_ctrl_c_cancels_the_tasks_the_merge_reports_and_resume_finishes_only_the_rest(tmp_path, slurm):
    root = four_cell_suite(tmp_path, {"none": "ok", "mtp": "hang_before_ready"})
    reports = root / "reports"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--suite", "fake", "--executor", "slurm", "--shards", "2",
         "--run-id", "c", *dirs(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**slurm, "PYTHONPATH": str(ROOT), "HARNESS_SLURM_POLL_S": "0.5", "HARNESS_GPU_BACKEND": "none"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_a_hanging_cell(reports, "c")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 130, err
    assert "cancelling the shard tasks" in err and "did not finish; resume them" in err
    merged = states(reports / "c")
    # Cells packed beside the hanging ones were cut short too: interrupted (INFRA_ERROR) or never started
    # (MISSING), never a pass; the hanging cells certainly so.
    assert set(merged.values()) <= {"PASS", "NO_BASELINE", "INFRA_ERROR", "MISSING"}
    assert {state for (cell, _), state in merged.items() if "/mtp/" in cell} <= {"INFRA_ERROR", "MISSING"}
    causes = [c["error"]["cause"] for c in json.loads((reports / "c" / "results.json").read_text())["cells"]
              if c["error"]]
    assert "interrupted" in causes  # SIGTERM reached the tasks' interrupt path
    assert_nothing_survives(tmp_path)

    # Resume: the hanging cells now start; only the shards that did not finish are submitted again.
    finished = {shard: (reports / shard / "results.json").read_text() for shard in ("c-shard1of2", "c-shard2of2")}
    suite_file = root / "suites" / "fake.yaml"
    suite_file.write_text(suite_file.read_text().replace("hang_before_ready", "ok"))
    done = harness("run", "--resume", str(reports / "c.slurm"), "--executor", "slurm", env=slurm)
    assert done.returncode == 0, done.stderr
    assert {state for state in states(reports / "c-attempt2").values()} <= {"PASS", "NO_BASELINE"}
    record = json.loads((reports / "c.slurm" / "submission.json").read_text())
    resubmitted = record["attempts"][1]["indices"]
    assert resubmitted and len(resubmitted) <= 2
    for index, shard in enumerate(("c-shard1of2", "c-shard2of2"), start=1):
        if index not in resubmitted:  # a shard that had finished was left alone
            assert (reports / shard / "results.json").read_text() == finished[shard]
    assert (reports / "c" / "results.json").exists()  # the first merge is kept, never overwritten
    assert_nothing_survives(tmp_path)


def wait_for_a_hanging_cell(reports: Path, run_id: str, seconds: float = 120) -> None:
    logs = [reports / f"{run_id}-shard{k}of2" / "cells" / f"fake__quark-mxfp4__mtp__tp{tp}" / "server.log"
            for k in (1, 2) for tp in (1, 2)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(log.exists() and "Capture target decode" in log.read_text() for log in logs):
            return
        time.sleep(0.2)
    pytest.fail("no hanging cell started")


def test_a_task_killed_outright_leaves_its_cells_missing_never_a_pass(tmp_path, slurm, monkeypatch):
    root = four_cell_suite(tmp_path, {"none": "ok", "mtp": "hang_before_ready"})
    reports = root / "reports"
    state = {"HARNESS_STATE_DIR": str(tmp_path / "state")}  # the tasks' leftovers registry, swept below
    done = harness("run", "--suite", "fake", "--executor", "slurm", "--shards", "2", "--run-id", "lost",
                   "--detach", *dirs(root), env={**slurm, **state})
    assert done.returncode == 0, done.stderr
    assert "harness gate" in done.stdout and "harness run --resume" in done.stdout
    merge_job = done.stdout.split("merge job: ")[1].split()[0]
    wait_for_a_hanging_cell(reports, "lost")
    # SIGKILL to the tasks' harness, as a lost node or the OOM killer would: no interrupt path, no result for the
    # cells in flight. (scancel's own signals go through harness's interrupt path: the test above.)
    tasks = [process for process in psutil.process_iter(["cmdline"])
             if any("lost-shard" in part for part in process.info["cmdline"] or []) and "--resume" in
             (process.info["cmdline"] or [])]
    assert tasks
    for process in tasks:
        process.kill()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and subprocess.run(
            ["squeue", "-h", "-j", merge_job], env=slurm, capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)
    gate = harness("gate", str(reports / "lost"), env=slurm)
    assert gate.returncode == 3, gate.stdout + gate.stderr  # infrastructure: cells were not measured
    merged = states(reports / "lost")
    assert {state for (cell, _), state in merged.items() if "/mtp/" in cell} <= {"MISSING", "INFRA_ERROR"}
    assert any(state == "MISSING" for (cell, _), state in merged.items() if "/mtp/" in cell), (
        merged, [log.read_text() for log in (reports / "lost.slurm" / "logs").iterdir()])
    # The killed harness could not tear its servers down; the next harness on that node sweeps them.
    monkeypatch.setenv("HARNESS_STATE_DIR", state["HARNESS_STATE_DIR"])
    from harness.engines import leftovers

    assert leftovers.sweep() >= 1
    assert_nothing_survives(tmp_path)


def test_same_verdicts_names_every_difference():
    sys.path.insert(0, str(ROOT / "tools" / "slurm"))
    try:
        from same_verdicts import differences
    finally:
        sys.path.pop(0)
    first = {("a", "gsm8k.accuracy"): "PASS", ("b", "cell"): "PASS"}
    assert differences(first, dict(first)) == []
    assert differences(first, {("a", "gsm8k.accuracy"): "REGRESSED"}) == [
        "a gsm8k.accuracy: PASS vs REGRESSED", "b cell: PASS vs absent"]


def test_each_shard_plan_keeps_the_kernels_and_every_task_the_flags(tmp_path):
    from harness.pipeline import RunRequest
    from harness.shard import Shard
    from harness.slurm import executor
    from harness.slurm.scripts import Submission

    request = RunRequest(suite="fake", kernels="aiter-reference", force_reference_kernels=True, preflight=False,
                         max_parallel=2, suites_dir=tmp_path / "s", baselines_dir=tmp_path / "b",
                         reports_dir=tmp_path / "r")
    args = executor._task_args(request)
    assert {"--force-reference-kernels", "--no-preflight"} <= set(args) and args[args.index("--max-parallel") + 1] == "2"
    submission = Submission(suite="fake", run_id="k", shard_dirs=[str(tmp_path / "r" / "k-shard1of1")], workdir=".",
                            harness=["python"], task_args=args, merge_args=[], options={})
    executor._lay_out_shards(submission, [Shard(1, 1, (), 0.0)], "aiter-reference")
    plan = json.loads((tmp_path / "r" / "k-shard1of1" / "plan.json").read_text())
    assert plan["kernels"] == "aiter-reference" and plan["shard"] == "1/1"
