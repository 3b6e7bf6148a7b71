"""The example CI workflow: valid against GitHub's workflow schema and action-validator, clean by zizmor under
its documented policy (.github/zizmor.yml), its image following the baselines' SGLang release, and every harness
command in it parses."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "nightly-rocm.yml"
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"
# `make workflow-check-tools` (a prerequisite of `make test`) installs it with npm.
ACTION_VALIDATOR = ROOT / "tools" / "workflow-check" / "node_modules" / ".bin" / "action-validator"
ZIZMOR = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")


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


def workflow_document() -> dict:
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as true
    return document


def write_broken(tmp_path: Path, break_it) -> Path:
    document = workflow_document()
    break_it(document)
    broken = tmp_path / "nightly-rocm.yml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    return broken


def action_validator(path: Path) -> subprocess.CompletedProcess:
    if not ACTION_VALIDATOR.exists():
        pytest.skip("@action-validator/cli is not installed (`make workflow-check-tools` needs npm)")
    return subprocess.run([str(ACTION_VALIDATOR), str(path)], capture_output=True, text=True, timeout=120)


def test_workflow_passes_action_validator():
    checked = action_validator(WORKFLOW)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_action_validator_catches_a_broken_workflow(tmp_path):
    checked = action_validator(write_broken(tmp_path, lambda doc: doc["jobs"]["gate"].update({"stepz": []})))
    assert checked.returncode != 0 and "Additional property 'stepz' is not allowed" in checked.stderr


def zizmor(path: Path) -> list[dict]:
    """zizmor's findings (offline: no GitHub API), with the repository's policy file."""
    assert ZIZMOR is not None, "zizmor comes with the test extra (pip install -e '.[test]')"
    checked = subprocess.run([ZIZMOR, "--offline", "--no-progress", "--format", "json", "--config",
                              str(ZIZMOR_CONFIG), str(path)], capture_output=True, text=True, timeout=120)
    assert checked.returncode in (0, 11, 12, 13, 14), checked.stderr  # 1x: findings, at most severity x
    return json.loads(checked.stdout)


def test_zizmor_finds_nothing_outside_the_documented_policy():
    findings = zizmor(WORKFLOW)
    assert findings == [], [(f["ident"], f["locations"][0]["symbolic"]["annotation"]) for f in findings]


@pytest.mark.parametrize(("break_it", "audit"), [
    # A matrix value expanded into a script: a suite named `x"; curl ...` would run.
    (lambda doc: doc["jobs"]["run"]["steps"].append({"run": "echo ${{ matrix.suite }}"}), "template-injection"),
    # A checkout that keeps the token in .git/config, then the workspace uploaded.
    (lambda doc: doc["jobs"]["gate"]["steps"][0].pop("with"), "artipacked"),
    (lambda doc: doc["jobs"]["plan"]["steps"].append({"uses": "actions/checkout@v4"}), "unpinned-uses"),
])
def test_zizmor_catches_what_the_workflow_fixed(tmp_path, break_it, audit):
    assert audit in {finding["ident"] for finding in zizmor(write_broken(tmp_path, break_it))}


def test_the_image_policy_covers_exactly_one_image():
    """.github/zizmor.yml lets the run job's image go unpinned by digest (its reason is there): only that one."""
    document = workflow_document()
    images = [job["container"] for job in document["jobs"].values() if "container" in job]
    assert images == [document["jobs"]["run"]["container"]]
    assert not any("services" in job for job in document["jobs"].values())


def test_the_container_image_follows_the_release_the_baselines_name():
    """The workflow's SGLANG_RELEASE (the one place the image's release is written) is the SGLang release of
    the measured baselines: a baseline update to another release fails here until the workflow follows."""
    from harness.baselines import load_baselines

    releases = {entry.provenance.engine_version
                for path in sorted((ROOT / "baselines").glob("*.yaml"))
                for metrics in load_baselines(path).cells.values() for entry in metrics.values()
                if entry.provenance.source == "harness"
                and (entry.provenance.engine_version or "").startswith("sglang ")}
    assert releases, "no measured baseline names its SGLang release"
    document = workflow_document()
    release = document["env"]["SGLANG_RELEASE"]
    assert releases == {f"sglang {release}"}
    assert document["jobs"]["run"]["container"]["image"] == "${{ needs.plan.outputs.image }}"
    image_step = next(step for step in document["jobs"]["plan"]["steps"] if step.get("id") == "image")
    assert "lmsysorg/sglang:v$SGLANG_RELEASE-rocm" in image_step["run"]
    assert "0.5.5" not in WORKFLOW.read_text()


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
    assert {argv[1] for argv in commands} >= {"validate", "plan", "data", "run", "merge", "gate"}
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv[1:])  # an unknown flag or a bad value exits here
