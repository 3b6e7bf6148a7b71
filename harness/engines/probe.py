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


def run_python_module(python: str, module: str, args: list[str], *, timeout_s: float) -> None:
    """Run `python -m module args` to completion; its output goes to this terminal."""
    from harness.errors import InfraError

    try:
        done = subprocess.run([python, "-m", module, *args], timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise InfraError(f"{module} did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise InfraError(f"{module} {' '.join(args)} failed with exit code {done.returncode}")
