"""What a user reads speaks of their cluster and their SGLang, never of this project's own work history (issue
21): no seed or issue numbers of the project's tracker, no lent machines, no call-by-call mechanics of the
sandbox it was built in. SGLang's own PRs and issues (#23219, issue #23142) are the user's terms and stay."""

from __future__ import annotations

import json
import re

import pytest

from harness.cli import main
from tests.conftest import ROOT

WORK_HISTORY = re.compile(r"\bseed \d{3}\b|\bissue \d+\b|\blent\b|this machine hides|device (?:call|tool)|"
                          r"\ban earlier session\b|\bcarry \[", re.IGNORECASE)
USER_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "suites").glob("*.yaml"))]


@pytest.mark.parametrize("path", USER_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_user_facing_files_carry_no_work_history(path):
    found = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1)
             if WORK_HISTORY.search(line)]
    assert found == []


def test_the_fixes_command_speaks_in_prs_and_releases(capsys, tmp_path):
    assert main(["fixes", "--suites-dir", str(ROOT / "suites"), "--reports-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "kimi-k25-eagle3-mla" in text and WORK_HISTORY.search(text) is None
    assert main(["fixes", "--json", "--suites-dir", str(ROOT / "suites"), "--reports-dir", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["fix"]: row["pr"] for row in rows}["kimi-k25-eagle3-mla"] == "#23803, #26506, #19689"


def test_the_readme_links_the_set_up_guide_that_answers_a_new_user():
    readme, setup = (ROOT / "README.md").read_text(), (ROOT / "docs" / "setup.md").read_text()
    assert "[docs/setup.md](docs/setup.md)" in readme and "VLLM_PIP_ARGS=" in readme and "PIP_ARGS=" in readme
    for needed in ("--python", "python:", "HF_TOKEN", "harness data fetch gsm8k", "make test", "make local",
                   "PIP_RETRIES=0", "VLLM_PIP_ARGS", "--find-links", "exit code 1", "skipped"):
        assert needed in setup, needed
