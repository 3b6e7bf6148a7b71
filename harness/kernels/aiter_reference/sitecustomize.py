"""Loaded at start-up by every Python whose PYTHONPATH begins with this folder (a server harness runs with
reference kernels, and the scheduler processes it spawns, which inherit PYTHONPATH).

SGLang 0.5.17 defines its Quark MXFP4 kernels only on ROCm: `quark_w4a4_mxfp4.py` binds `dynamic_mxfp4_quant`,
`gemm_afp4wfp4`, `gemm_afp4wfp4_pre_quant` and `fused_gemm_afp4wfp4_split_cat` under `if _is_hip:` (lines
21-157), and `quark_w4a4_mxfp4_moe.py` imports `e8m0_shuffle` / `shuffle_weight` only when SGLANG_USE_AITER and
ROCm (lines 42-45) and sets `dynamic_mxfp4_quant = None` off ROCm (lines 47-50). This hook waits for those two
modules to be imported, lets them run, then binds those globals to the reference `aiter` package beside it.
It imports neither torch nor SGLang itself: the binding happens inside SGLang's own import, when both are
loaded. Afterwards the next `sitecustomize` on sys.path (harness's memory probe, a distribution's own) runs,
as it would have without this one.

Design: the globals are bound to the reference functions themselves rather than registered as the
`torch.ops.sglang.aiter_*` custom ops SGLang wraps them in on ROCm (docs/aiter-reference.md says why).
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_DENSE = "sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4"
_MOE = "sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4_moe"
_HERE = os.path.dirname(os.path.realpath(__file__))


def _bind_dense(module) -> None:
    from aiter.ops.triton.gemm.fused.fused_gemm_afp4wfp4_split_cat import fused_gemm_afp4wfp4_split_cat
    from aiter.ops.triton.gemm_afp4wfp4 import gemm_afp4wfp4
    from aiter.ops.triton.gemm_afp4wfp4_pre_quant_atomic import gemm_afp4wfp4_pre_quant
    from aiter.ops.triton.quant import dynamic_mxfp4_quant

    # The call sites (quark_w4a4_mxfp4.py:497, 508, 511, 522) use the ROCm wrappers' signatures (lines 57,
    # 83, 108, 154), which are aiter's own.
    module.dynamic_mxfp4_quant = dynamic_mxfp4_quant
    module.gemm_afp4wfp4 = gemm_afp4wfp4
    module.gemm_afp4wfp4_pre_quant = gemm_afp4wfp4_pre_quant
    module.fused_gemm_afp4wfp4_split_cat = fused_gemm_afp4wfp4_split_cat


def _bind_moe(module) -> None:
    from aiter.ops.shuffle import shuffle_weight
    from aiter.ops.triton.quant import dynamic_mxfp4_quant
    from aiter.utility.fp4_utils import e8m0_shuffle

    module.dynamic_mxfp4_quant = dynamic_mxfp4_quant
    module.e8m0_shuffle = e8m0_shuffle  # called unconditionally by process_weights_after_loading (line 582)
    module.shuffle_weight = shuffle_weight  # reached only on gfx95 (line 592): the reference refuses it


# Online MXFP4 (#18005, `--quantization quark_mxfp4`): both scheme modules refuse it unless `mxfp_supported()`
# (sglang/srt/utils/common.py:1019: ROCm gfx95x only; quark_w4a4_mxfp4.py:183, quark_w4a4_mxfp4_moe.py:82). With
# this variable set (suite gpu-sglang-mxfp4 sets it on its online cells only), the two modules' own name answers
# True, so SGLang's online path runs with the reference quantizer; nothing else in SGLang sees the change.
ONLINE_SWITCH = "HARNESS_AITER_REFERENCE_ONLINE_MXFP4"


def _allow_online(module) -> None:
    if os.environ.get(ONLINE_SWITCH) == "1" and hasattr(module, "mxfp_supported"):
        module.mxfp_supported = lambda: True


def _bind_dense_then_online(module) -> None:
    _bind_dense(module)
    _allow_online(module)


def _bind_moe_then_online(module) -> None:
    _bind_moe(module)
    _allow_online(module)


BINDINGS = {_DENSE: _bind_dense_then_online, _MOE: _bind_moe_then_online}
bound: list = []  # the modules bound so far, for `--dry-run`-style reports and tests


class _BindingLoader(importlib.abc.Loader):
    """The module's own loader, then the binding."""

    def __init__(self, loader, bind):
        self._loader, self._bind = loader, bind

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._bind(module)
        bound.append(module.__name__)
        # One line per process in the server's log, so that a run shows which kernels served it.
        sys.stderr.write(f"harness aiter-reference: {module.__name__} bound to the reference kernels in {_HERE}\n")

    def __getattr__(self, name):  # get_source, get_filename, ... as the wrapped loader answers them
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for the two scheme modules it asks the other finders and wraps their loader."""

    def find_spec(self, name, path=None, target=None):
        bind = BINDINGS.get(name)
        if bind is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _BindingLoader(spec.loader, bind)
                return spec
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def next_sitecustomize():
    """The spec of the `sitecustomize` Python would have loaded had this folder not come first: the first one
    on sys.path after this folder's entry."""
    entries = [os.path.realpath(entry or os.getcwd()) for entry in sys.path]
    if _HERE not in entries:
        return None
    for entry in entries[entries.index(_HERE) + 1:]:
        if entry == _HERE:
            continue
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [entry])
        if spec is not None:
            return spec
    return None


def _chain() -> None:
    spec = next_sitecustomize()
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


install()
_chain()
