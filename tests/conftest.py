from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

# Property tests judge answers, never wall time (speed is benchmarks/' job): a loaded or slow machine must not
# fail them on hypothesis's 200 ms deadline.
settings.register_profile("harness", deadline=None)
settings.load_profile("harness")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def _shared_data() -> Path:
    """../shared/data beside the checkout, or beside the main checkout of a git worktree (whose .git is a
    file naming <main>/.git/worktrees/<name>)."""
    roots = [ROOT]
    git = ROOT / ".git"
    if git.is_file() and git.read_text().startswith("gitdir:"):
        roots.append(Path(git.read_text().split(":", 1)[1].strip()).parents[2])
    for root in roots:
        if (root.parent / "shared" / "data").is_dir():
            return root.parent / "shared" / "data"
    return SHARED / "data"


FETCH_GSM8K = "harness data fetch gsm8k"


def _gsm8k_home() -> Path | None:
    """Where the tests read GSM8K (never a copy in the repo; a test never fetches it): where harness itself
    looks ($HARNESS_DATA_DIR, its default data directory), then ../shared/data beside the checkout (CI's).
    The first directory holding both files, verified, wins."""
    from harness.errors import ConfigError
    from harness.evals import data, gsm8k

    for root in dict.fromkeys([data.data_dir(), data.default_data_dir(), _shared_data()]):
        try:
            for split in ("test", "train"):
                gsm8k.gsm8k_path(split, root)
        except ConfigError:
            continue
        return root
    return None


GSM8K_HOME = _gsm8k_home()
# Without it, an empty directory of the tests' own: no test reads or writes a user's data directory.
os.environ["HARNESS_DATA_DIR"] = str(GSM8K_HOME or tempfile.mkdtemp(prefix="harness-test-data-"))
GSM8K_MISSING = (f"needs GSM8K, found neither in $HARNESS_DATA_DIR, ~/.cache/harness/data nor {SHARED / 'data'}: "
                 f"run `{FETCH_GSM8K}` once to run it")
# No test reads the Hugging Face hub (harness.secrets.hub_token: nothing is sent while this is set); CI also
# runs the tests with no network at all (docs/testing.md).
os.environ["HF_HUB_OFFLINE"] = "1"
# The host-wide registry of launched servers (harness.engines.leftovers): the tests' own, never a user's.
os.environ.setdefault("HARNESS_STATE_DIR", tempfile.mkdtemp(prefix="harness-test-state-"))

BASE_SUITE: dict[str, Any] = {
    "schema_version": 1,
    "name": "demo",
    "engine": "sglang",
    "hardware": {"vendor": "amd", "gpu_arch": ["gfx950"], "gpus": 8},
    "evals": {"gsm8k": {"protocol": "sglang-fewshot", "shots": 5, "questions": 200}},
    "matrix": {"quant": ["quark-mxfp4"], "spec": ["none", "mtp"], "tp": [4, 8]},
    "models": [
        {"id": "glm5", "fix": "glm5-mxfp4-mtp", "trust_remote_code": True,
         "checkpoints": {"quark-mxfp4": "amd/GLM-5-MXFP4"}},
    ],
}


@pytest.fixture
def base_suite() -> dict[str, Any]:
    return copy.deepcopy(BASE_SUITE)


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write a suite document as suites/<name>.yaml and return its path."""
    def write(document: dict[str, Any], name: str | None = None) -> Path:
        suites = tmp_path / "suites"
        suites.mkdir(exist_ok=True)
        path = suites / f"{name or document.get('name', 'demo')}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path
    return write


@pytest.fixture
def stub_server():
    """Start tests/stub_openai.py with the given flags; yields a function returning its base URL."""
    processes = []

    def start(*flags: str) -> str:
        process = subprocess.Popen([sys.executable, str(Path(__file__).parent / "stub_openai.py"), *flags],
                                   stdout=subprocess.PIPE, text=True)
        processes.append(process)
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        return f"http://127.0.0.1:{int(line.split()[-1])}"

    yield start
    for process in processes:
        process.kill()
        process.wait()
        process.stdout.close()


# --- marks: `make test-fast` runs what is neither (docs/testing.md) -------------------------------------
# Whole modules by what they do; `stub_server` marks any test that starts the stub. A test module that
# starts processes or runs heavy numerics is named here, so that the fast loop stays fast.
PROCESS_MODULES = {  # start servers, harness itself, or other processes
    "test_faults", "test_run_cli", "test_launcher", "test_transport", "test_rig", "test_local_e2e",
    "test_lmeval_backend", "test_eval_cli", "test_site_browser", "test_workflow", "test_devices",
    "test_history", "test_numerics", "test_architecture", "test_bisect", "test_bisect_e2e", "test_slurm",
    "test_test_data", "test_capabilities",
}
SLOW_MODULES = {  # torch, triton's interpreter, amd-quark: numerics that take seconds per test
    "test_aiter_reference", "test_mxfp4", "test_fakequant", "test_sglang_agreement", "test_vllm_cpu_mxfp4",
    "test_local_eagle3",
}


def pytest_collection_modifyitems(config, items) -> None:
    """The process and slow marks by module (make test-fast leaves them out); tests marked `gsm8k` skip, saying
    why and what to run, where GSM8K is nowhere to be read."""
    for item in items:
        if GSM8K_HOME is None and item.get_closest_marker("gsm8k"):
            item.add_marker(pytest.mark.skip(reason=GSM8K_MISSING))
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in PROCESS_MODULES or "stub_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.process)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _only_process_tests_start_processes(request, monkeypatch):
    """`make test-fast` stays fast by construction: a test outside the process and slow marks that starts a process
    (subprocess, multiprocessing, os.fork: all go through Popen's _execute_child or os.fork) fails, naming the
    list to join, instead of slowing the inner loop unnoticed."""
    if request.node.get_closest_marker("process") or request.node.get_closest_marker("slow"):
        return  # neither is in the loop; slow tests may start a worker (the numerics gate's run, amd-quark's)

    def refuse(*_args, **_kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process: add its module to PROCESS_MODULES in "
                             "tests/conftest.py (or mark the test @pytest.mark.process)")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    monkeypatch.setattr(os, "fork", refuse)
