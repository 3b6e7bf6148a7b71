"""harness's reference `aiter` (harness/kernels/aiter_reference/) against aiter's own code, and its hook.

- dynamic_mxfp4_quant: bit-exact with aiter's Triton kernel run under TRITON_INTERPRET=1, replayed from the
  goldens tools/aiter_reference.py wrote (and live where triton and the pinned wheel are here);
- the GEMMs: against a float64 product of the exact dequantizations, which agree with harness's
  amd-quark-bit-exact MXFP4 reference (harness/loading/mxfp4.py);
- the sitecustomize hook, in a fresh interpreter: it binds the two scheme modules' names, imports neither
  torch nor SGLang by itself, and chains to the next sitecustomize on sys.path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.kernels import aiter_reference_path
from harness.loading import mxfp4 as quark_mxfp4
from tests.aiter_sglang_cpu import float64_moe, within_rounding
from tools import aiter_reference as upstream

REFERENCE = Path(aiter_reference_path())


def _import_reference(*names: str) -> list:
    """The reference package's modules, imported from its folder without leaving `aiter` importable for the
    rest of the test session (a later test may ask whether aiter is installed)."""
    saved = list(sys.path)
    sys.path.insert(0, str(REFERENCE))
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path[:] = saved
        for name in [n for n in sys.modules if n == "aiter" or n.startswith("aiter.")]:
            del sys.modules[name]


(aiter, _harness, _quant, _gemm, _pre_quant, _split_cat, _fused_moe, _fp4_utils) = _import_reference(
    "aiter", "aiter._harness", "aiter.ops.triton.quant", "aiter.ops.triton.gemm_afp4wfp4",
    "aiter.ops.triton.gemm_afp4wfp4_pre_quant_atomic", "aiter.ops.triton.gemm.fused.fused_gemm_afp4wfp4_split_cat",
    "aiter.fused_moe", "aiter.utility.fp4_utils")
dynamic_mxfp4_quant, gemm_afp4wfp4 = _quant.dynamic_mxfp4_quant, _gemm.gemm_afp4wfp4
gemm_afp4wfp4_pre_quant = _pre_quant.gemm_afp4wfp4_pre_quant
fused_gemm_afp4wfp4_split_cat = _split_cat.fused_gemm_afp4wfp4_split_cat
fused_moe, e8m0_shuffle, e8m0_unshuffle = _fused_moe.fused_moe, _fp4_utils.e8m0_shuffle, _fp4_utils.e8m0_unshuffle
ActivationType, QuantType = aiter.ActivationType, aiter.QuantType
GOLDEN_MIN_CASES = 39


def _goldens() -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    cases: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(upstream.GOLDEN)).items():
        name, part = key.rsplit("/", 1)
        cases.setdefault(name, {})[part] = tensor
    return cases


def test_the_reference_folder_is_the_pythonpath_entry():
    assert REFERENCE.is_dir()
    assert (REFERENCE / "sitecustomize.py").is_file()
    assert (REFERENCE / "aiter" / "__init__.py").is_file()
    assert Path(aiter.__file__).resolve().parent == REFERENCE / "aiter"
    assert aiter.HARNESS_REFERENCE
    left = importlib.util.find_spec("aiter")  # the import above left nothing behind for other tests
    assert left is None or not str(left.origin).startswith(str(REFERENCE))


# ---------------------------------------------------------------------------------------- dynamic_mxfp4_quant
def test_quant_is_bit_exact_with_aiters_kernel_on_the_goldens():
    cases = _goldens()
    assert len(cases) >= GOLDEN_MIN_CASES
    compared = 0
    for name, case in cases.items():
        packed, scales = dynamic_mxfp4_quant(case["x"])
        assert torch.equal(packed, case["fp4"]), name
        assert torch.equal(scales, case["scale"]), name
        compared += packed.numel() + scales.numel()
    assert compared == 159369  # docs/aiter-reference.md quotes this figure


def test_the_goldens_cover_the_awkward_inputs():
    names = set(_goldens())
    for dtype in ("bf16", "fp16", "fp32"):
        for kind in ("ties", "amax-rounding", "zeros", "subnormal", "largest"):
            assert f"{dtype}/{kind}" in names
    assert any(name.startswith("bf16/short-block/") for name in names)
    # Odd row counts, and shapes on both sides of aiter's launch heuristics (M <= 32, N <= 1024).
    assert {"fp32/wide/7x96", "bf16/wide/33x2048", "fp16/wide/65x128", "bf16/wide/2x4096"} <= names


def test_quant_returns_aiters_layout():
    x = torch.randn(5, 96, dtype=torch.bfloat16)
    packed, scales = dynamic_mxfp4_quant(x)
    assert packed.shape == (5, 48) and packed.dtype == torch.uint8 and packed.is_contiguous()
    # A transposed view of a [N/32, M] buffer (aiter/ops/triton/quant.py:152-156).
    assert scales.shape == (5, 3) and scales.dtype == torch.uint8 and scales.stride() == (1, 5)


def test_quant_rounds_as_aiter_does_not_as_quark_exports():
    """aiter rounds E2M1 ties away from zero and keeps -0; amd-quark's export (harness's mxfp4 reference)
    rounds ties to even and writes +0. Scales agree."""
    x = torch.tensor([[6.0, 1.25, -1.25, 2.5, 5.0, -0.1] + [0.0] * 26], dtype=torch.float32)
    packed, scales = dynamic_mxfp4_quant(x)
    codes = _harness.unpack(packed)[0, :6].tolist()
    assert codes == [0x7, 0x3, 0x8 | 0x3, 0x5, 0x7, 0x8]  # 6, 1.5, -1.5, 3, 6, -0
    quark_packed, quark_scales = quark_mxfp4.quantize(x)
    assert torch.equal(scales, quark_scales)
    assert quark_mxfp4.unpack(quark_packed)[0, :6].tolist() == [0x7, 0x2, 0x8 | 0x2, 0x4, 0x6, 0x0]


def test_quant_gives_zero_where_the_kernel_shifts_by_32_bits_or_more():
    """Undefined on hardware; the Triton interpreter (numpy) and the port give 0 (docs/aiter-reference.md)."""
    x = torch.zeros(1, 32)
    x[0, 0], x[0, 1] = 4.0, 2.0 ** -40
    assert int(_harness.shift_widths(x)[0, 1]) >= 32
    assert int(_harness.shift_widths(x)[0, 0]) == 0
    packed, _ = dynamic_mxfp4_quant(x)
    assert _harness.unpack(packed)[0, 1] == 0


LIVE_CHECK = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from tests.aiter_sglang_cpu import float64_moe, within_rounding
from tools import aiter_reference as upstream
from aiter.ops.triton.quant import dynamic_mxfp4_quant
quant = upstream.aiter_dynamic_mxfp4_quant()
generator = torch.Generator().manual_seed(7)
same = 0
for rows, cols, dtype in ((3, 64, torch.bfloat16), (9, 160, torch.float16), (40, 256, torch.float32)):
    spread = torch.randint(-30, 30, (rows, cols), generator=generator).float()
    x = upstream.defined((torch.randn(rows, cols, generator=generator) * torch.exp2(spread)).to(dtype))
    expected, mine = quant(upstream.interpreter_input(x)), dynamic_mxfp4_quant(x)
    same += torch.equal(expected[0], mine[0]) and torch.equal(expected[1], mine[1])
print(same)
"""


@pytest.mark.skipif(upstream.wheel("amd-aiter") is None, reason=upstream.missing_reason("amd-aiter"))
def test_quant_is_bit_exact_with_aiters_kernel_live():
    """Fresh inputs through aiter's kernel under the interpreter (its own process: TRITON_INTERPRET is read
    when triton is first imported)."""
    pytest.importorskip("triton", reason="triton is not installed (the goldens test covers the same answers)")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", LIVE_CHECK, str(REFERENCE)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3"


# ------------------------------------------------------------------------------------------------------ GEMMs
def _random_mxfp4(rows: int, k: int, generator: torch.Generator, low: int = 100, high: int = 140):
    packed = torch.randint(0, 256, (rows, k // 2), generator=generator, dtype=torch.uint8)
    scales = torch.randint(low, high, (rows, k // 32), generator=generator, dtype=torch.uint8)
    return packed, scales


def test_dequantize_agrees_with_harness_quark_reference_on_every_byte():
    packed = torch.arange(256, dtype=torch.uint8).repeat(256, 1)  # every code pair under every scale byte
    scales = torch.arange(256, dtype=torch.uint8).unsqueeze(1).repeat(1, 256 * 2 // 32)
    mine = _harness.dequantize(packed, scales)
    quark = quark_mxfp4.dequantize(packed, scales)
    assert torch.equal(mine[:255], quark[:255])  # E8M0 0 is 2^-127 in both; -0.0 == 0.0
    assert torch.equal(mine.signbit(), quark.signbit())
    assert bool(mine[255].isnan().all()) and bool(quark[255].isnan().all())  # 0xFF is NaN


def _reference_product(x, x_scales, w, w_scales):
    """The BF16 dequant reference: exact dequantizations (harness's amd-quark reference) multiplied in float64."""
    a = quark_mxfp4.dequantize(x, x_scales, torch.float64)
    b = quark_mxfp4.dequantize(w, w_scales, torch.float64)
    return a @ b.T, a.abs() @ b.abs().T


def _assert_within_one_rounding(y: torch.Tensor, exact: torch.Tensor, magnitude: torch.Tensor, k: int):
    assert within_rounding(y, exact, magnitude, k)["within"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gemm_afp4wfp4_is_the_dequantized_product_written_into_y(dtype):
    generator = torch.Generator().manual_seed(11)
    x, x_scales = _random_mxfp4(7, 256, generator, 120, 130)
    w, w_scales = _random_mxfp4(48, 256, generator, 120, 130)
    y = torch.full((7, 48), float("nan"), dtype=dtype)
    out = gemm_afp4wfp4(x, w, x_scales, w_scales, dtype, y)
    assert out is y
    exact, magnitude = _reference_product(x, x_scales, w, w_scales)
    _assert_within_one_rounding(y, exact, magnitude, 256)
    fresh = gemm_afp4wfp4(x, w, x_scales, w_scales, dtype)
    assert fresh.dtype == dtype and torch.equal(fresh, y)


def test_gemm_afp4wfp4_pre_quant_quantizes_with_aiters_rounding_and_adds_into_y():
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(5, 128, generator=generator).to(torch.bfloat16)
    w, w_scales = _random_mxfp4(32, 128, generator, 122, 130)
    x_q, x_s = dynamic_mxfp4_quant(x)
    alone = gemm_afp4wfp4(x_q, w, x_s, w_scales, torch.bfloat16)
    y = torch.zeros(5, 32, dtype=torch.bfloat16)
    assert gemm_afp4wfp4_pre_quant(x, w, w_scales, torch.bfloat16, y) is y
    assert torch.equal(y, alone)
    start = torch.randn(5, 32, generator=generator).to(torch.bfloat16)
    y = start.clone()
    gemm_afp4wfp4_pre_quant(x, w, w_scales, torch.bfloat16, y)
    assert torch.equal(y, start + alone)  # tl.atomic_add of the bf16 tile into y


def test_moe_expert_cache_changes_nothing_but_memory(monkeypatch):
    w13, w13_s, w2, w2_s = _moe_weights(4, 64, 32, 8)
    weights, ids = _routing(6, 4, 2, 9)
    x = _activations(6, 64, 10)
    kwargs = {"activation": ActivationType.Silu, "quant_type": QuantType.per_1x32, "w1_scale": _shuffled(w13_s),
              "w2_scale": _shuffled(w2_s)}
    on_the_fly = fused_moe(x, w13, w2, weights, ids, **kwargs)
    assert not hasattr(w13, _harness._CACHE_ATTRIBUTE)  # default: dense weights only
    monkeypatch.setenv(_harness.CACHE_SETTING, "all")
    cached = fused_moe(x, w13, w2, weights, ids, **kwargs)
    assert getattr(w13, _harness._CACHE_ATTRIBUTE)[1].dtype == torch.bfloat16
    assert torch.equal(cached, on_the_fly) and torch.equal(fused_moe(x, w13, w2, weights, ids, **kwargs), on_the_fly)


def test_dense_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(_harness.CACHE_SETTING, "off")
    generator = torch.Generator().manual_seed(14)
    x, x_scales = _random_mxfp4(3, 64, generator, 125, 129)
    w, w_scales = _random_mxfp4(16, 64, generator, 125, 129)
    gemm_afp4wfp4(x, w, x_scales, w_scales, torch.float32)
    assert not hasattr(w, _harness._CACHE_ATTRIBUTE)


def test_weight_cache_follows_the_weight():
    generator = torch.Generator().manual_seed(13)
    x, x_scales = _random_mxfp4(3, 64, generator, 125, 129)
    w, w_scales = _random_mxfp4(16, 64, generator, 125, 129)
    first = gemm_afp4wfp4(x, w, x_scales, w_scales, torch.float32)
    assert hasattr(w, _harness._CACHE_ATTRIBUTE)
    w.copy_(torch.randint(0, 256, w.shape, generator=generator, dtype=torch.uint8))  # in place: version bumps
    second = gemm_afp4wfp4(x, w, x_scales, w_scales, torch.float32)
    assert not torch.equal(first, second)
    assert torch.equal(second, gemm_afp4wfp4(x, w.clone(), x_scales, w_scales, torch.float32))


def test_split_cat_raises_naming_the_symbol():
    with pytest.raises(NotImplementedError, match="fused_gemm_afp4wfp4_split_cat"):
        fused_gemm_afp4wfp4_split_cat(x=None, w=None, y=None, x_scale=None, w_scale=None, S1=1, S2=1, dtype=None)


# ------------------------------------------------------------------------------------------------- the hook
FAKE_DENSE = """
_is_hip = False
if _is_hip:
    from aiter.ops.triton.quant import dynamic_mxfp4_quant
"""
FAKE_MOE = """
_is_hip = False
if _is_hip:
    from aiter.ops.triton.quant import dynamic_mxfp4_quant
else:
    dynamic_mxfp4_quant = None
"""
PROBE = """
import json, sys
dense = __import__("sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4", fromlist=["x"])
early = "torch" in sys.modules
moe = __import__("sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4_moe", fromlist=["x"])
import sitecustomize
print(json.dumps({
    "dense": [getattr(dense, n).__module__ for n in ("dynamic_mxfp4_quant", "gemm_afp4wfp4", "gemm_afp4wfp4_pre_quant",
                                                     "fused_gemm_afp4wfp4_split_cat")],
    "moe": [getattr(moe, n).__module__ for n in ("dynamic_mxfp4_quant", "e8m0_shuffle", "shuffle_weight")],
    "bound": sitecustomize.bound, "chained": __import__("os").environ.get("CHAINED_MARK"),
}))
"""


def _fake_sglang(root: Path) -> Path:
    schemes = root / "sglang" / "srt" / "layers" / "quantization" / "quark" / "schemes"
    schemes.mkdir(parents=True)
    for package in (schemes, *schemes.parents):
        if package == root:
            break
        (package / "__init__.py").touch()
    (schemes / "quark_w4a4_mxfp4.py").write_text(FAKE_DENSE)
    (schemes / "quark_w4a4_mxfp4_moe.py").write_text(FAKE_MOE)
    return root


def _run(pythonpath: list[Path], code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_hook_binds_the_scheme_modules_and_chains(tmp_path):
    import json

    chained = tmp_path / "next"
    chained.mkdir()
    (chained / "sitecustomize.py").write_text("import os\nos.environ['CHAINED_MARK'] = 'ran'\n")
    fake = _fake_sglang(tmp_path / "fake")
    check = "import sys\nassert 'torch' not in sys.modules and 'sglang' not in sys.modules\n" + PROBE
    done = _run([REFERENCE, chained, fake], check)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dense"] == ["aiter.ops.triton.quant", "aiter.ops.triton.gemm_afp4wfp4",
                               "aiter.ops.triton.gemm_afp4wfp4_pre_quant_atomic", "aiter._harness"]
    assert report["moe"] == ["aiter.ops.triton.quant", "aiter.utility.fp4_utils", "aiter._harness"]
    assert report["bound"] == ["sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4",
                               "sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4_moe"]
    assert report["chained"] == "ran"


@pytest.mark.parametrize("switch", [None, "1"])
def test_online_mxfp4_is_allowed_only_with_the_switch(tmp_path, switch):
    fake = _fake_sglang(tmp_path / "fake")
    for name in ("quark_w4a4_mxfp4.py", "quark_w4a4_mxfp4_moe.py"):
        path = fake / "sglang" / "srt" / "layers" / "quantization" / "quark" / "schemes" / name
        path.write_text("def mxfp_supported():\n    return False\n" + path.read_text())
    code = ("import sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4 as dense\n"
            "import sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4_moe as moe\n"
            "print(dense.mxfp_supported(), moe.mxfp_supported())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_AITER_REFERENCE_ONLINE_MXFP4")}
    env["PYTHONPATH"] = os.pathsep.join((str(REFERENCE), str(fake)))
    if switch is not None:
        env["HARNESS_AITER_REFERENCE_ONLINE_MXFP4"] = switch
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == (["True", "True"] if switch else ["False", "False"])


def test_hook_chains_to_harness_memory_probe(tmp_path):
    """The GPU cells put the reference first and harness's probe folder after it: the probe still starts."""
    probes = Path(__file__).resolve().parent.parent / "harness" / "engines" / "probes"
    target = tmp_path / "probe.json"
    code = ("import os, sys, threading\n"
            "assert 'torch' not in sys.modules\n"
            "names = [t.name for t in threading.enumerate()]\n"
            "assert 'harness-torch-memory-probe' in names, names\n")
    env_code = f"import os; os.environ['HARNESS_TORCH_MEMORY_PROBE'] = {str(target)!r}\n"
    done = _run([REFERENCE, probes], env_code + code)
    assert done.returncode != 0  # the variable must be set before start-up: check that the test can fail
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"PYTHONPATH": os.pathsep.join((str(REFERENCE), str(probes))), "HARNESS_TORCH_MEMORY_PROBE": str(target)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_hook_without_a_next_sitecustomize_and_without_sglang(tmp_path):
    done = _run([REFERENCE], "import sys, sitecustomize\nassert 'torch' not in sys.modules\n"
                             "assert sitecustomize.bound == []\nprint('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_missing_aiter_names_stay_import_errors():
    """SGLang probes optional aiter symbols with `try: from aiter import X / except ImportError`: the reference
    must answer those as a missing aiter symbol does."""
    code = textwrap.dedent("""
        try:
            from aiter import flash_attn_varlen_func
        except ImportError:
            print("import-error")
    """)
    done = _run([REFERENCE], code)
    assert done.stdout.strip() == "import-error", done.stderr


# -------------------------------------------------------------------------------------------------- the MoE
needs_aiter_wheel = pytest.mark.skipif(upstream.wheel("amd-aiter") is None, reason=upstream.missing_reason("amd-aiter"))
# [rows, cols] scale shapes: SGLang's (experts * 2I or experts * H, width / 32), padded and not.
SHUFFLE_SHAPES = ((256, 8), (512, 64), (8 * 2 * 64, 4), (3 * 96, 2), (1, 1), (300, 13), (4 * 2 * 48, 6))


@needs_aiter_wheel
@pytest.mark.parametrize("rows,cols", SHUFFLE_SHAPES)
def test_e8m0_shuffle_is_aiters_own_layout(rows, cols, monkeypatch):
    theirs = upstream.aiter_fp4_utils().e8m0_shuffle
    scale = torch.randint(0, 256, (rows, cols), dtype=torch.uint8, generator=torch.Generator().manual_seed(rows))
    mine = e8m0_shuffle(scale)
    # aiter pads with torch.empty (fp4_utils.py:79-84); made zeros here so that every byte can be compared.
    monkeypatch.setattr(torch, "empty", torch.zeros)
    assert torch.equal(mine, theirs(scale))
    monkeypatch.undo()
    assert mine.shape == ((rows + 255) // 256 * 256, (cols + 7) // 8 * 8)
    assert torch.equal(e8m0_unshuffle(mine, rows, cols), scale)


def test_e8m0_unshuffle_refuses_what_shuffle_cannot_produce():
    with pytest.raises(ValueError, match="not e8m0_shuffle's output"):
        e8m0_unshuffle(torch.zeros(100, 8, dtype=torch.uint8), 100, 8)


def test_e8m0_shuffle_passes_none_and_fp32_through():
    assert e8m0_shuffle(None) is None
    scale = torch.ones(3, 3)
    assert e8m0_shuffle(scale) is scale


def _activations(rows: int, cols: int, seed: int, dtype=torch.bfloat16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    reach = 10 if dtype == torch.float16 else 20  # FP16 overflows beyond 2^15
    spread = torch.randint(-reach, reach, (rows, cols // 32, 1), generator=generator).float()
    x = torch.randn(rows, cols // 32, 32, generator=generator) * torch.exp2(spread)
    x[0, 0] = 0.0  # an all-zero block (the HIP quantizer's 1e-10 floor)
    x[1, 1, :] = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 4)  # E2M1 ties, scale 2^0
    return x.reshape(rows, cols).to(dtype)


@needs_aiter_wheel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_moe_activation_quantizer_is_bit_exact_with_aiters_torch_mirror(dtype):
    """aiter's fused MoE quantizes activations with its HIP kernel; `per_1x32_f4_quant` is aiter's torch mirror
    of it. Blocks whose |max| is below the kernel's 1e-10 floor are the one place they differ by design."""
    theirs = upstream.aiter_per_1x32_f4_quant()
    x = _activations(64, 256, 21, dtype)
    x[2, :32] = 0.0
    packed, scales = _harness.hip_quant(x)
    expected_packed, expected_scales = theirs(x)
    expected_scales = expected_scales.view(torch.uint8)
    assert torch.equal(packed, expected_packed.view(torch.uint8))
    floor = x.float().reshape(64, 8, 32).abs().amax(dim=-1) < 1e-10
    assert int(floor.sum()) == 2  # the two all-zero blocks
    assert torch.equal(scales[~floor], expected_scales[~floor])
    # The kernel starts |max| at 1e-10 (quant_kernels.cu:87): byte 92 where the mirror writes 0; the codes are
    # zeros either way.
    assert bool((scales[floor] == 92).all()) and bool((expected_scales[floor] == 0).all())


def _moe_weights(experts: int, hidden: int, inter: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=generator) * 0.05
    w2 = torch.randn(experts, hidden, inter, generator=generator) * 0.05
    w13_q, w13_s = quark_mxfp4.quantize(w13.to(torch.bfloat16))
    w2_q, w2_s = quark_mxfp4.quantize(w2.to(torch.bfloat16))
    return w13_q, w13_s, w2_q, w2_s


def _routing(tokens: int, experts: int, topk: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, experts, generator=generator)
    weights, ids = torch.softmax(logits, dim=-1).topk(topk, dim=-1)
    return weights.float(), ids.to(torch.int32)


def _shuffled(scales: torch.Tensor) -> torch.Tensor:
    """As SGLang's process_weights_after_loading stores them (quark_w4a4_mxfp4_moe.py:579-587)."""
    e, rows, _ = scales.shape
    return e8m0_shuffle(scales.reshape(e * rows, -1)).view(e, rows, -1)


MOE_CASES = ((5, 8, 128, 64, 2), (1, 4, 64, 32, 1), (33, 16, 256, 96, 4))


@needs_aiter_wheel
@pytest.mark.parametrize("tokens,experts,hidden,inter,topk", MOE_CASES)
def test_fused_moe_is_aiters_two_stage_torch_reference(tokens, experts, hidden, inter, topk):
    stage1, stage2 = upstream.aiter_torch_moe_stages(QuantType, ActivationType)
    quant = upstream.aiter_per_1x32_f4_quant()
    w13, w13_s, w2, w2_s = _moe_weights(experts, hidden, inter, tokens)
    weights, ids = _routing(tokens, experts, topk, tokens + 1)
    x = _activations(max(tokens, 2), hidden, tokens + 2)[:tokens]
    mine = fused_moe(x, w13.view(torch.float4_e2m1fn_x2), w2.view(torch.float4_e2m1fn_x2), weights, ids,
                     activation=ActivationType.Silu, quant_type=QuantType.per_1x32, w1_scale=_shuffled(w13_s),
                     w2_scale=_shuffled(w2_s), a1_scale=None, expert_mask=None)
    a1, a1_scale = quant(x)
    a2 = stage1(a1, w13, w2, weights, ids, dtype=torch.bfloat16, activation=ActivationType.Silu,
                quant_type=QuantType.per_1x32, a1_scale=a1_scale, w1_scale=w13_s)
    a2, a2_scale = quant(a2.reshape(tokens * topk, inter))
    expected = stage2(a2, w13, w2, weights, ids, dtype=torch.bfloat16, quant_type=QuantType.per_1x32,
                      w2_scale=w2_s, a2_scale=a2_scale)
    assert mine.dtype == torch.bfloat16 and mine.shape == (tokens, hidden)
    assert torch.equal(mine, expected)


@pytest.mark.parametrize("tokens,experts,hidden,inter,topk", MOE_CASES)
def test_fused_moe_matches_a_float64_dequant_reference(tokens, experts, hidden, inter, topk):
    w13, w13_s, w2, w2_s = _moe_weights(experts, hidden, inter, tokens)
    weights, ids = _routing(tokens, experts, topk, tokens + 1)
    x = _activations(max(tokens, 2), hidden, tokens + 2)[:tokens]
    mine = fused_moe(x, w13, w2, weights, ids, activation=ActivationType.Silu, quant_type=QuantType.per_1x32,
                     w1_scale=_shuffled(w13_s), w2_scale=_shuffled(w2_s))
    exact, magnitude = float64_moe(x, w13, w13_s, w2, w2_s, weights, ids, _harness.hip_quant_dequant)
    assert within_rounding(mine, exact, magnitude, hidden + inter)["within"]


def test_fused_moe_expert_mask_and_invalid_ids():
    """Expert parallelism as SGLang sets it: global ids, a mask of the local experts plus a sink slot (0) that
    -1 ids are routed to; a slot without a local expert contributes nothing."""
    w13, w13_s, w2, w2_s = _moe_weights(2, 64, 32, 3)
    x = _activations(4, 64, 4)
    weights = torch.full((4, 2), 0.5)
    ids = torch.tensor([[2, 3], [0, 3], [4, 2], [-1, 3]], dtype=torch.int32)  # global; local experts are 2 and 3
    mask = torch.tensor([0, 0, 1, 1, 0], dtype=torch.int32)
    kwargs = {"activation": ActivationType.Silu, "quant_type": QuantType.per_1x32, "w1_scale": _shuffled(w13_s),
              "w2_scale": _shuffled(w2_s)}
    masked = fused_moe(x, w13, w2, weights, ids, expert_mask=mask, **kwargs)
    local = torch.tensor([[0, 1], [-1, 1], [-1, 0], [-1, 1]], dtype=torch.int32)
    assert torch.equal(masked, fused_moe(x, w13, w2, weights, local, **kwargs))
    alone = fused_moe(x[1:2], w13, w2, torch.tensor([[0.5, 0.0]]), torch.tensor([[1, 1]], dtype=torch.int32), **kwargs)
    assert torch.equal(masked[1:2], alone)


@pytest.mark.parametrize("override,named", [
    ({"quant_type": QuantType.per_Token}, "quant_type=per_Token"),
    ({"activation": ActivationType.Swiglu}, "activation=Swiglu"),
    ({"a1_scale": torch.ones(1)}, "a1_scale"),
    ({"doweight_stage1": True}, "doweight_stage1"),
    ({"gate_mode": 1}, "gate_mode"),
])
def test_fused_moe_refuses_what_it_does_not_implement(override, named):
    w13, w13_s, w2, w2_s = _moe_weights(1, 64, 32, 5)
    kwargs = {"activation": ActivationType.Silu, "quant_type": QuantType.per_1x32, "w1_scale": _shuffled(w13_s),
              "w2_scale": _shuffled(w2_s)} | override
    with pytest.raises(NotImplementedError, match=f"fused_moe with {named}"):
        fused_moe(_activations(2, 64, 6), w13, w2, torch.ones(2, 1), torch.zeros(2, 1, dtype=torch.int32), **kwargs)


def test_sglang_names_resolve_on_the_reference_enums():
    """moe_runner/aiter.py:94-115 looks the members up by these names."""
    assert {getattr(QuantType, n) for n in ("No", "per_Token", "per_128x128", "per_1x32")}
    assert {getattr(ActivationType, n) for n in ("Silu", "Swiglu", "Situv2", "Gelu")}


def test_fused_moe_has_no_no_combine_parameter():
    """SGLang probes the signature for `no_combine` (moe_runner/aiter.py:118-128) and refuses itself."""
    import inspect

    assert "no_combine" not in inspect.signature(fused_moe).parameters


# ------------------------------------------------------------------------------- SGLang's own code, on CPU
needs_sglang_wheel = pytest.mark.skipif(upstream.wheel("sglang") is None, reason=upstream.missing_reason("sglang"))


@needs_sglang_wheel
def test_sglang_quark_mxfp4_schemes_run_on_cpu_through_the_hook(tmp_path):
    """SGLang 0.5.17's QuarkW4A4MXFP4 (create_weights, process_weights_after_loading, apply_weights) and
    QuarkW4A4MXFp4MoE (process_weights_after_loading: the scale shuffle; apply_weights through SGLang's aiter
    runner) run in a fresh interpreter whose PYTHONPATH starts with the reference folder: their outputs equal
    float64 references within one BF16 rounding (plus fp32 accumulation)."""
    import json

    from tests import aiter_sglang_cpu

    tree = aiter_sglang_cpu.build(tmp_path / "sglang-tree", upstream.wheel("sglang"))
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join((str(REFERENCE), str(tree)))
    done = subprocess.run([sys.executable, "-c", aiter_sglang_cpu.SCRIPT, str(root)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bound"] == ["sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4",
                               "sglang.srt.layers.quantization.quark.schemes.quark_w4a4_mxfp4_moe"]
    assert report["dense_weights_kept"] and report["moe_scales_shuffled"]
    assert report["dense_shape"] == [14, 96] and report["moe_shape"] == [9, 256]
    assert report["dense"]["within"] and report["dense"]["outputs"] == 1344
    assert report["moe"]["within"] and report["moe"]["outputs"] == 2304
