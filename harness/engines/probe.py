"""Probes that start a short process: the engine package's version and its git commit."""

from __future__ import annotations

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


def package_version(python: str, distribution: str) -> tuple[str | None, str | None]:
    """(version, commit) of a package as the engine's Python sees it; commit only for git checkouts."""
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
    try:
        done = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
