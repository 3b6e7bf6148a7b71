"""Engine builds: the ordered series `harness bisect` walks, and how each one is made ready to serve.

A build is what a server's Python imports as the engine: either a git revision of the engine's source tree,
checked out into a worktree that goes first on the server's PYTHONPATH (most loader regressions are
Python-only, like SGLang #23467 and #23973), or an interpreter / virtualenv of its own (one per line of a
builds file). Only this module runs git for bisect; every call is an argv list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, InfraError

GIT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Build:
    """One engine build of the series. `revision` (a full commit) for a source tree, else `python`."""

    label: str  # how tables name it: a short commit and its subject, or the builds file's line
    revision: str | None = None
    python: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Build:
        return cls(label=str(body["label"]), revision=body.get("revision"), python=body.get("python"))


def _git(source: Path, *args: str) -> str:
    """git's output for `git -C source args`; a failure is a one-line ConfigError (a revision that does not
    exist, a directory that is no repository)."""
    try:
        done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ConfigError("--engine-src: git is not installed") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"git {' '.join(args)} in {source} took over {GIT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        raise ConfigError(f"--engine-src {source}: git {' '.join(args)}: {message}")
    return done.stdout


def git_series(source: Path, good: str, bad: str) -> list[Build]:
    """The revisions from `good` to `bad` in order, both ends included, along the first-parent line (a series,
    as `git bisect` over a linear history would see it). `good` must be an ancestor of `bad`."""
    if not source.is_dir():
        raise ConfigError(f"--engine-src {source}: no such directory")
    good_commit, bad_commit = _commit(source, good, "--good"), _commit(source, bad, "--bad")
    if good_commit == bad_commit:
        raise ConfigError(f"--good {good} and --bad {bad} are the same commit: nothing to bisect")
    try:
        _git(source, "merge-base", "--is-ancestor", good_commit, bad_commit)
    except ConfigError:
        raise ConfigError(f"--good {good} is not an ancestor of --bad {bad} in {source}") from None
    listed = _git(source, "log", "--first-parent", "--reverse", "--format=%H %s", f"{good_commit}..{bad_commit}")
    first = _git(source, "log", "-1", "--format=%H %s", good_commit)
    builds = []
    for line in [first, *listed.splitlines()]:
        commit, _, subject = line.strip().partition(" ")
        builds.append(Build(label=f"{commit[:10]} {subject}".strip(), revision=commit))
    if builds[-1].revision != bad_commit or _git(source, "rev-parse", f"{builds[1].revision}^").strip() != good_commit:
        raise ConfigError(f"--good {good} is not on --bad {bad}'s first-parent line (it came in through a merge): "
                          f"give --good a commit of that line")
    return builds


def _commit(source: Path, revision: str, flag: str) -> str:
    try:
        return _git(source, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").strip()
    except ConfigError:
        raise ConfigError(f"{flag} {revision}: no such commit in {source}") from None


def read_builds_file(path: Path) -> list[Build]:
    """`--builds FILE`: one Python interpreter or virtualenv per line, oldest first; blank lines and `#`
    comments are ignored. A virtualenv is the directory holding bin/python."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"--builds {path}: {error.strerror or error}") from None
    builds = []
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        builds.append(Build(label=f"{path.name}:{number} {text}", python=str(_interpreter(Path(text), path, number))))
    if len(builds) < 2:
        raise ConfigError(f"--builds {path}: needs at least two builds (a good and a bad one), found {len(builds)}")
    return builds


def _interpreter(entry: Path, path: Path, number: int) -> Path:
    candidate = entry / "bin" / "python" if entry.is_dir() else entry
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise ConfigError(f"--builds {path}: line {number}: {entry} is neither an executable Python nor a "
                          f"virtualenv with bin/python")
    return candidate.absolute()


def pick(builds: list[Build], wanted: str, flag: str) -> int:
    """The index of the build `--good` / `--bad` names in a builds file: its line's text, or its 1-based
    position among the builds."""
    for index, build in enumerate(builds):
        if wanted in (build.python, build.label.split(" ", 1)[1]):
            return index
    if wanted.isdigit() and 1 <= int(wanted) <= len(builds):
        return int(wanted) - 1
    raise ConfigError(f"{flag} {wanted}: no such build (give a line's text or its position, 1 to {len(builds)})")


def checkout(source: Path, revision: str, target: Path) -> Path:
    """A detached worktree of `source` at `revision` in `target` (one left by an interrupted step is replaced)."""
    remove_checkout(source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _git(source, "worktree", "add", "--detach", "--force", str(target), revision)
    return target


def remove_checkout(source: Path, target: Path) -> None:
    """Remove a worktree made by `checkout` and git's record of it; absent ones are fine."""
    if target.exists():
        try:
            _git(source, "worktree", "remove", "--force", str(target))
        except ConfigError:
            shutil.rmtree(target, ignore_errors=True)
    _git(source, "worktree", "prune")
