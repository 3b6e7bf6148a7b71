"""The README's test command passes on any clone (issue 21): tests that read GSM8K find it where harness itself
looks ($HARNESS_DATA_DIR, its default data directory) or in ../shared/data, and otherwise skip, saying what to
run; none fetches it, none fails for its absence. Checked by running pytest on a copy of tests/conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GSM8K_HOME, ROOT

NEEDS_GSM8K = '''
import os
from pathlib import Path

import pytest


@pytest.mark.gsm8k
def test_reads_gsm8k():
    assert (Path(os.environ["HARNESS_DATA_DIR"]) / "gsm8k" / "test.jsonl").is_file()


def test_needs_nothing():
    pass
'''


def run_pytest(checkout: Path, home: Path, data_dir: Path | None) -> subprocess.CompletedProcess:
    tests = checkout / "tests"
    tests.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", tests / "conftest.py")
    (tests / "test_data_here.py").write_text(NEEDS_GSM8K)
    env = {key: value for key, value in os.environ.items() if key != "HARNESS_DATA_DIR"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    if data_dir is not None:
        env["HARNESS_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(checkout), str(tests)],
                          capture_output=True, text=True, env=env, cwd=checkout, timeout=120)


def test_without_gsm8k_anywhere_the_tests_that_read_it_skip_naming_the_fetch(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = run_pytest(tmp_path / "clone" / "harness", home, None)  # no ../shared beside it, an empty home
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout
    assert "needs GSM8K" in done.stdout and "run `harness data fetch gsm8k` once to run it" in done.stdout
    assert not (home / ".cache").exists()  # nothing fetched, nothing written in the user's data directory


def _gsm8k_copy(root: Path) -> Path:
    assert GSM8K_HOME is not None
    (root / "gsm8k").mkdir(parents=True)
    for name in ("test.jsonl", "train.jsonl"):
        os.symlink(GSM8K_HOME / "gsm8k" / name, root / "gsm8k" / name)
    return root


@pytest.mark.gsm8k
@pytest.mark.parametrize("where", ["HARNESS_DATA_DIR", "default data directory", "default beside an empty HARNESS_DATA_DIR",
                                   "../shared/data"])
def test_gsm8k_is_found_where_harness_looks_and_beside_the_checkout(tmp_path, where):
    home = tmp_path / "home"
    home.mkdir()
    data_dir = None
    if where == "HARNESS_DATA_DIR":
        data_dir = _gsm8k_copy(tmp_path / "elsewhere")
    elif where.startswith("default"):
        _gsm8k_copy(home / ".cache" / "harness" / "data")
        if "empty" in where:
            data_dir = tmp_path / "empty"
            data_dir.mkdir()
    else:
        _gsm8k_copy(tmp_path / "clone" / "shared" / "data")
    done = run_pytest(tmp_path / "clone" / "harness", home, data_dir)
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr
