"""A git history of a small engine source tree that the local server (`transformers serve`) imports, for
`harness bisect`'s CPU demonstration (tests/test_bisect_e2e.py, docs/bisect.md).

The tree is `tinyengine`: a `sitecustomize.py` (Python imports it at start-up from the PYTHONPATH, where
`harness bisect --engine-src` puts the checkout) installs a hook that makes amd-quark's real-quantized
weights (`StaticRealQuantizer.unpack_params`, the path every MXFP4 linear of the served export dequantizes
through on each forward) decode their E8M0 scales with `tinyengine.e8m0.decode`. Sixteen commits: the first
decodes as amd-quark does, one (`DEFECT_SUBJECT`) replaces the computation by a 256-entry table built one
exponent off (every MXFP4 weight doubled, a scale bug of the kind the gate guards against), the others change
unrelated things. With `defect=False` the same commit builds its table right: the bad end does not reproduce.

    python -m tests.engine_history DIR [--no-defect]     # prints the commits, oldest first
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

DEFECT_INDEX = 9  # the commit (0-based) that plants the defect
DEFECT_SUBJECT = "e8m0: decode scales through a precomputed table"

SITECUSTOMIZE = '''"""Imported by Python at start-up when this tree is on the PYTHONPATH: installs tinyengine's hooks."""

import tinyengine.hooks

tinyengine.hooks.install()
'''

HOOKS = '''"""Makes amd-quark's real-quantized weights decode E8M0 scales with tinyengine.e8m0, once quark is imported."""

import importlib.abc
import sys

TARGET = "quark.torch.export.nn.modules.realquantizer"


def _patch(module):
    from tinyengine import e8m0

    cls = module.StaticRealQuantizer
    original = cls.unpack_params

    def unpack_params(self):
        if getattr(self.qspec, "scale_format", None) != "e8m0":
            return original(self)
        _, zero_point = original(self)  # quark's own handling of the zero point; its scale is replaced
        raw = self.scale.data.t().contiguous() if self.transpose_scale else self.scale
        return e8m0.decode(raw, self.float_dtype), zero_point

    cls.unpack_params = unpack_params


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


def install():
    if TARGET in sys.modules:
        _patch(sys.modules[TARGET])
    else:
        sys.meta_path.insert(0, _Finder())
'''

E8M0_COMPUTED = '''"""E8M0 scales (OCP Microscaling): one byte e per block of 32, the scale 2^(e - 127)."""

import torch


def decode(scale, dtype):
    """The scale bytes (uint8) as powers of two in `dtype`, as amd-quark computes them."""
    return 2 ** (scale.view(torch.uint8).to(torch.int16) - 127).to(dtype)
'''

E8M0_TABLE = '''"""E8M0 scales (OCP Microscaling): one byte e per block of 32, the scale 2^(e - 127)."""

import torch

# Every byte's power of two, looked up instead of computed on each forward.
_POWERS = torch.tensor([2.0 ** (e - 127) for e in range({start}, 256)] + [0.0] * {start}, dtype=torch.float32)


def decode(scale, dtype):
    """The scale bytes (uint8) as powers of two in `dtype`."""
    return _POWERS.to(dtype)[scale.view(torch.uint8).long()]
'''

# (subject, {path: text}) in order; "{n}" in a text is the commit's number.
_UNRELATED = [
    ("README: say what tinyengine is", {"README.md": "# tinyengine\n\nHooks the local server imports.\n"}),
    ("version 0.1.1", {"tinyengine/__init__.py": '__version__ = "0.1.1"\n'}),
    ("limits: a batch size constant", {"tinyengine/limits.py": "MAX_BATCH = 64\n"}),
    ("CHANGELOG", {"CHANGELOG.md": "# Changes\n\n- 0.1.1: README\n"}),
    ("limits: a longer context", {"tinyengine/limits.py": "MAX_BATCH = 64\nMAX_CONTEXT = 4096\n"}),
    ("banner: a start-up name", {"tinyengine/banner.py": 'NAME = "tinyengine"\n'}),
    ("version 0.1.2", {"tinyengine/__init__.py": '__version__ = "0.1.2"\n'}),
    ("README: how it is loaded", {"README.md": "# tinyengine\n\nHooks the local server imports (sitecustomize).\n"}),
    ("CHANGELOG: 0.1.2", {"CHANGELOG.md": "# Changes\n\n- 0.1.2: limits\n- 0.1.1: README\n"}),
    ("limits: batch 128", {"tinyengine/limits.py": "MAX_BATCH = 128\nMAX_CONTEXT = 4096\n"}),
    ("banner: a version line", {"tinyengine/banner.py": 'NAME = "tinyengine"\nLINE = NAME + " ready"\n'}),
    ("version 0.1.3", {"tinyengine/__init__.py": '__version__ = "0.1.3"\n'}),
    ("CHANGELOG: 0.1.3", {"CHANGELOG.md": "# Changes\n\n- 0.1.3: scales\n- 0.1.2: limits\n- 0.1.1: README\n"}),
    ("README: the E8M0 hook", {"README.md": "# tinyengine\n\nHooks (sitecustomize): E8M0 scale decoding.\n"}),
]
COMMITS = 16


def commits(defect: bool = True) -> list[tuple[str, dict[str, str]]]:
    """The history: the initial tree, the unrelated changes, and the table commit at DEFECT_INDEX."""
    initial = ("tinyengine: E8M0 decoding for quark's real-quantized weights",
               {"sitecustomize.py": SITECUSTOMIZE, "tinyengine/__init__.py": '__version__ = "0.1.0"\n',
                "tinyengine/hooks.py": HOOKS, "tinyengine/e8m0.py": E8M0_COMPUTED})
    table = E8M0_TABLE.replace("{start}", "1" if defect else "0")
    history = [initial, *_UNRELATED]
    history.insert(DEFECT_INDEX, (DEFECT_SUBJECT, {"tinyengine/e8m0.py": table}))
    assert len(history) == COMMITS
    return history


def _git(directory: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "tinyengine", "GIT_AUTHOR_EMAIL": "dev@tinyengine.invalid",
           "GIT_COMMITTER_NAME": "tinyengine", "GIT_COMMITTER_EMAIL": "dev@tinyengine.invalid",
           "GIT_AUTHOR_DATE": "2026-12-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-12-01T00:00:00Z",
           "HOME": str(directory)}  # no user's git configuration (signing, hooks) reaches the history
    done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, env=env,
                          check=True, timeout=60)
    return done.stdout.strip()


def make_history(directory: Path, *, defect: bool = True) -> list[str]:
    """Write the history into a new git repository at `directory`; returns the commits, oldest first."""
    directory.mkdir(parents=True)
    _git(directory, "init", "--quiet", "--initial-branch", "main")
    made = []
    for subject, files in commits(defect):
        for name, text in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        _git(directory, "add", "--all")
        _git(directory, "commit", "--quiet", "-m", subject)
        made.append(_git(directory, "rev-parse", "HEAD"))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--no-defect", action="store_true", help="build the table right: nothing regresses")
    args = parser.parse_args()
    for number, commit in enumerate(make_history(args.directory, defect=not args.no_defect)):
        print(number, commit)


if __name__ == "__main__":
    main()
