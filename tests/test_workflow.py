"""The example CI workflow: valid against GitHub's workflow schema, and every harness command in it parses."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "nightly-rocm.yml"


def schema_check(path: Path) -> subprocess.CompletedProcess:
    # check-jsonschema carries SchemaStore's github-workflows schema: no network needed.
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_workflow_is_valid_against_the_github_workflow_schema():
    checked = schema_check(WORKFLOW)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("break_it", [
    lambda doc: doc["jobs"]["gate"].pop("runs-on"),
    lambda doc: doc["jobs"]["run"].update({"strategy": {"fail-fast": "sometimes"}}),
    lambda doc: doc["jobs"]["plan"]["steps"].append({"uses": "actions/checkout@v4", "run": "both is invalid"}),
])
def test_the_schema_check_catches_a_broken_workflow(tmp_path, break_it):
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as true
    break_it(document)
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(document))
    assert schema_check(broken).returncode != 0


def harness_commands() -> list[list[str]]:
    document = yaml.safe_load(WORKFLOW.read_text())
    scripts = [step["run"] for job in document["jobs"].values() for step in job["steps"] if "run" in step]
    commands = []
    for script in scripts:
        for line in script.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line.startswith("harness "):
                continue
            line = line.split(" >>")[0]
            # Stand-ins for what the runner substitutes: shard names, counts, run ids.
            line = re.sub(r'"?\$\{\{ matrix\.shard \}\}"?|"\$shard_name"', "1/2", line)
            line = line.replace('"$SHARDS"', "2").replace('"${runs[@]}"', "shards/a shards/b")
            line = re.sub(r'\$\{\{[^}]*\}\}|\$\{[^}]*\}|\$[A-Za-z_]+', "x", line)
            commands.append(shlex.split(line))
    return commands


def test_every_harness_command_in_the_workflow_parses():
    commands = harness_commands()
    assert {argv[1] for argv in commands} >= {"validate", "plan", "data", "run", "merge"}
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv[1:])  # an unknown flag or a bad value exits here
