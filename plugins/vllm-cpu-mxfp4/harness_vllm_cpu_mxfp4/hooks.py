"""Run a callback on a module right after its first import, without importing it earlier.

The plugin's changes concern modules only vLLM's model-building worker needs (vLLM's linear-kernel table,
amd-quark's MX kernels); importing them from `register`, which vLLM runs in every process it starts, would add
their import time (amd-quark's alone is ~17 s) to the API server and engine-core processes too.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when `name` is first imported, lets the normal finders locate it and runs the
    callback on the module right after it has executed."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]):
        self.name, self.callback = name, callback

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # the lookup below must not find this finder again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module, callback = spec.loader.exec_module, self.callback

        def exec_then_callback(module):
            run_module(module)
            callback(module)

        spec.loader.exec_module = exec_then_callback
        return spec


def after_import(name: str, callback: Callable[[ModuleType], None]) -> None:
    """`callback(module)` now if `name` is imported, else right after its first import (once per process)."""
    if name in sys.modules:
        callback(sys.modules[name])
    elif not any(isinstance(finder, _AfterImport) and finder.name == name for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))
