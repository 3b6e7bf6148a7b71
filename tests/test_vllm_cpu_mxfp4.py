"""The vLLM CPU MXFP4 plugin (plugins/vllm-cpu-mxfp4): its CPU bodies for amd-quark's `dq_mxfp4` / `qdq_mxfp4`
agree with harness's amd-quark-bit-exact MXFP4 reference, and the import hook patches amd-quark's own module.

The plugin's registration itself needs vLLM (.venv-vllm); `local-numerics` exercises it for real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("quark")

from harness.loading import mxfp4  # noqa: E402

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "vllm-cpu-mxfp4"
sys.path.insert(0, str(PLUGIN))
from harness_vllm_cpu_mxfp4 import cpu_mx  # noqa: E402


def awkward_activations(rows: int = 64, cols: int = 256, seed: int = 0) -> torch.Tensor:
    """BF16 activations over a wide dynamic range, with zeros, exact E2M1 grid points and their midpoints
    (ties), values at the top of a block's range, and a whole zero block."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=gen) * torch.exp2(torch.randint(-20, 20, (rows, 1), generator=gen).float())
    grid = torch.tensor(mxfp4.E2M1_VALUES + (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.9, 6.0))
    x[:4, : grid.numel()] = grid * 2.0 ** torch.arange(4).unsqueeze(1)
    x[4, :] = 0.0
    x[5, :32] = 0.0
    x[6, ::7] *= -1.0
    return x.to(torch.bfloat16)


def reference_qdq(x: torch.Tensor) -> torch.Tensor:
    packed, scales = mxfp4.quantize(x)
    return mxfp4.dequantize(packed, scales, dtype=torch.float32).to(x.dtype)


# amd-quark keeps its CPU dequantizer in a module that imports triton at the top (quark/torch/kernel/mx/triton.py:10).
# The vLLM environment has triton (constraints/vllm-cpu.txt) and serves local-numerics' real export with it (make
# local, in CI); harness's own environment leaves triton out (it adds to the local servers' gated host RSS).
needs_triton = pytest.mark.skipif(__import__("importlib").util.find_spec("triton") is None,
                                  reason="amd-quark's CPU dequantizer module imports triton, which is not installed "
                                         "here (the vLLM environment has it: make local exercises this path)")


@needs_triton
def test_cpu_dequantize_equals_the_reference_on_every_code_and_a_range_of_scales():
    gen = torch.Generator().manual_seed(1)
    packed = torch.randint(0, 256, (48, 64), dtype=torch.uint8, generator=gen)  # every byte, both nibbles
    scales = torch.randint(100, 160, (48, 4), dtype=torch.uint8, generator=gen)
    for dtype in (torch.bfloat16, torch.float32):
        got = cpu_mx.dequantize(packed, scales, dtype)
        assert got.dtype == dtype and got.shape == (48, 128)
        assert torch.equal(got, mxfp4.dequantize(packed, scales, dtype=torch.float32).to(dtype))


def test_cpu_quantize_dequantize_equals_the_reference_rounding():
    """quark's CPU fake-quantizer in "even" mode against harness's reference (quantize, then dequantize): the
    same scale and the same half-to-even rounding on every element, ties and zero blocks included. Blocks
    below 2^-125 are left out: there Quark's export writes scale byte 1 (a rule of its export, not of QDQ)."""
    x = awkward_activations()
    assert torch.equal(cpu_mx.quantize_dequantize(x), reference_qdq(x))


def test_cpu_quantize_dequantize_refuses_a_scale_mode_it_does_not_implement():
    with pytest.raises(NotImplementedError, match="floor"):
        cpu_mx.quantize_dequantize(torch.zeros(2, 32, dtype=torch.bfloat16), "floor")


@needs_triton
def test_patch_routes_cpu_tensors_to_quark_cpu_code_and_others_to_the_original():
    calls = []

    class FakeMx:
        @staticmethod
        def dq_mxfp4(x, scale, float_dtype):
            calls.append("gpu dq")
            return None

        @staticmethod
        def qdq_mxfp4(x, scale_calculation_mode="even"):
            calls.append("gpu qdq")
            return None

    module = FakeMx()
    cpu_mx.patch(module)
    cpu_mx.patch(module)  # idempotent: the wrappers are not wrapped again
    x = awkward_activations(rows=8, cols=64)
    assert torch.equal(module.qdq_mxfp4(x), reference_qdq(x))
    assert module.dq_mxfp4(torch.zeros(2, 16, dtype=torch.uint8), torch.full((2, 1), 127, dtype=torch.uint8),
                           torch.bfloat16).abs().sum() == 0
    meta = torch.empty(2, 32, device="meta")
    module.qdq_mxfp4(meta)
    module.dq_mxfp4(meta, meta, torch.bfloat16)
    assert calls == ["gpu qdq", "gpu dq"]


def test_the_import_hook_patches_amd_quarks_module_when_vllm_first_imports_it():
    """In a fresh interpreter, as in vLLM's worker: the hook is installed before amd-quark is imported, and the
    module vLLM's ops call (`from quark.torch.kernel import mx`) carries the CPU bodies once imported."""
    script = (f"import sys; sys.path.insert(0, {str(PLUGIN)!r})\n"
              "from harness_vllm_cpu_mxfp4 import cpu_mx\n"
              "cpu_mx.patch_when_imported(); cpu_mx.patch_when_imported()\n"
              "assert 'quark.torch.kernel.mx' not in sys.modules\n"
              "import torch\n"
              "from quark.torch.kernel import mx\n"
              "assert mx._harness_cpu_mx\n"
              "x = torch.tensor([[0.3, -1.1, 5.5, 6.5] * 8], dtype=torch.bfloat16)\n"
              "print(mx.qdq_mxfp4(x, 'even').tolist())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    x = torch.tensor([[0.3, -1.1, 5.5, 6.5] * 8], dtype=torch.bfloat16)
    assert done.stdout.strip().splitlines()[-1] == str(reference_qdq(x).tolist())
