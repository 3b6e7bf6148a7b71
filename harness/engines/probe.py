"""Probes that start a short process: the engine package's version and its git commit."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

_SCRIPT = """
import importlib.metadata as m, importlib.util as u, sys
name = sys.argv[1]
try:
    version = m.version(name)
except m.PackageNotFoundError:
    version = ""
spec = u.find_spec(name.replace("-", "_"))
print(version)
print(spec.origin if spec and spec.origin else "")
"""


@functools.cache
def package_version(python: str, distribution: str) -> tuple[str | None, str | None]:
    """(version, commit) of a package as the engine's Python sees it; commit only for git checkouts.

    Asked once per run (cached): it costs a Python start, which eight cells packed on one host would
    otherwise pay eight times at once."""
    if not distribution:
        return None, None
    try:
        done = subprocess.run([python, "-c", _SCRIPT, distribution], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    lines = (done.stdout.splitlines() + ["", ""])[:2]
    version, origin = lines[0].strip() or None, lines[1].strip()
    return version, _git_commit(Path(origin).parent) if origin else None


def _git_commit(directory: Path) -> str | None:
    """The commit of a source checkout of the package; None for an installed copy.

    An installed package can sit inside some other git tree (a virtualenv in a project checkout), whose
    HEAD says nothing about the package, so site-packages paths never yield a commit.
    """
    if {"site-packages", "dist-packages"} & set(directory.parts):
        return None
    try:
        done = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def run_python_module(python: str, module: str, args: list[str], *, timeout_s: float, log: Path) -> None:
    """Run `python -m module args` to completion, its output (amd-quark's configuration dumps, progress bars)
    into `log`, never onto harness's own output; a failure names the log and ends with its last lines."""
    from harness.errors import InfraError

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        try:
            done = subprocess.run([python, "-m", module, *args], stdin=subprocess.DEVNULL, stdout=sink,
                                  stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise InfraError(f"{module} did not finish within {timeout_s:.0f} s (its output: {log})") from None
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-_FAILURE_TAIL_LINES:]
        raise InfraError(f"{module} {' '.join(args)} failed with exit code {done.returncode} (its output: {log}); "
                         f"last lines: " + " | ".join(line.strip() for line in tail if line.strip()))


_FAILURE_TAIL_LINES = 5
