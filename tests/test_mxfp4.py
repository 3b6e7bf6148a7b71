"""The reference MXFP4: the OCP format by hand-computed cases, and bit-exactness with amd-quark's export
(the tiny model's, and the awkward inputs recorded in tests/golden/mxfp4/ by tests/mxfp4_goldens.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from harness.loading import mxfp4  # noqa: E402
from tests import mxfp4_goldens  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

HAS_QUARK = importlib.util.find_spec("quark") is not None


def block(*values: float) -> torch.Tensor:
    """One block of 32: the given values first, zeros after."""
    out = torch.zeros(32)
    out[: len(values)] = torch.tensor(values)
    return out


def test_e2m1_codes_decode_to_the_ocp_values():
    codes = torch.arange(16, dtype=torch.uint8)
    assert mxfp4.decode(codes).tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]


@pytest.mark.parametrize(("amax", "exponent"), [(6.0, 0), (7.0, 1), (1.0, -2), (0.75, -3), (0.875, -2), (12.0, 1),
                                                (0.0, -127)])
def test_scale_rule_by_hand(amax, exponent):
    # 6.0 = 1.5 * 2^2 stays 2^2 -> 2^0; 7.0 = 1.75 * 2^2 rounds up to 2^3 -> 2^1;
    # 0.75 = 1.5 * 2^-1 stays 2^-1 -> 2^-3 (0.75 / 2^-3 = 6); 0.875 = 1.75 * 2^-1 rounds up to 2^0 -> 2^-2.
    assert mxfp4.scale_exponents(block(amax)).item() == exponent


def test_ties_go_to_the_even_code_and_zero_is_positive():
    packed, scales = mxfp4.quantize(block(6.0, 1.25, 2.5, 5.0, 0.25, -0.2, 0.75, -6.5))
    assert scales.item() == 127  # scale 1
    values = mxfp4.dequantize(packed, scales)[:8].tolist()
    assert values == [6.0, 1.0, 2.0, 4.0, 0.0, 0.0, 1.0, -6.0]
    assert mxfp4.unpack(packed)[5].item() == 0  # -0.2 rounds to +0, not -0


def test_pack_puts_the_even_element_in_the_low_nibble():
    assert mxfp4.pack(torch.tensor([0x1, 0xF], dtype=torch.uint8)).item() == 0xF1
    codes = torch.randint(0, 16, (4, 64), dtype=torch.uint8)
    assert torch.equal(mxfp4.unpack(mxfp4.pack(codes)), codes)


def test_exactly_representable_values_round_trip():
    grid = torch.tensor(mxfp4.E2M1_VALUES)
    values = torch.cat([grid, -grid, grid.flip(0), -grid.flip(0)]).reshape(1, 32) * 2.0 ** -3
    packed, scales = mxfp4.quantize(values)
    assert packed.shape == (1, 16) and scales.shape == (1, 1)
    assert torch.equal(mxfp4.dequantize(packed, scales), values)


def test_nan_scale_and_what_mxfp4_cannot_hold():
    packed = torch.zeros(1, 16, dtype=torch.uint8)
    assert torch.isnan(mxfp4.dequantize(packed, torch.tensor([[0xFF]], dtype=torch.uint8))).all()
    with pytest.raises(ValueError, match="two values per byte"):
        mxfp4.quantize(torch.zeros(2, 33))  # Quark's export fails on it too (a reshape error)
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="inf or NaN"):
            mxfp4.quantize(block(1.0, bad))
    with pytest.raises(ValueError, match="floating-point"):
        mxfp4.quantize(torch.zeros(1, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="do not cover"):
        mxfp4.dequantize(packed, torch.zeros(1, 2, dtype=torch.uint8))


def test_zero_and_tiny_blocks_get_quarks_scale_byte_1():
    # Quark quantizes against 2^-127 but writes the byte through a log2 clamped at 2^-126.
    assert mxfp4.scale_exponents(block()).item() == -127
    packed, scales = mxfp4.quantize(torch.stack([block(), block(-0.0), block(6 * 2.0**-127), block(2.0**-122)]))
    assert scales.flatten().tolist() == [1, 1, 1, 3]
    assert mxfp4.unpack(packed)[2, 0].item() == 7  # 6.0 against 2^-127 ...
    assert mxfp4.dequantize(packed, scales)[2, 0].item() == 12 * 2.0**-127  # ... read back against 2^-126


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_values_whose_dequantization_overflows_are_written_as_four(dtype):
    top = torch.finfo(dtype).max  # 1.99.. * 2^127: the block's scale is 2^127 and 2.0 * 2^127 is inf
    packed, scales = mxfp4.quantize(block(top, -top, 1.5 * 2.0**127, 2.0**126).to(dtype))
    assert scales.item() == 254
    assert mxfp4.unpack(packed)[:4].tolist() == [6, 14, 3, 1]  # +-4.0 (Quark's code for inf), 1.5, 0.5


def test_fp16_overflow_keeps_the_code_it_would_have():
    # 65504 / 2^14 rounds to 4.0 and 4 * 2^14 overflows FP16: inf is written as 4.0 anyway.
    packed, scales = mxfp4.quantize(block(65504.0, -57344.0).half())
    assert scales.item() == 127 + 14 and mxfp4.unpack(packed)[:2].tolist() == [6, 14]


def test_input_dims_that_are_not_a_multiple_of_32_are_padded_as_quark_does():
    weights = torch.randn(3, 48)
    packed, scales = mxfp4.quantize(weights)
    assert packed.shape == (3, 24) and scales.shape == (3, 2)
    padded_packed, padded_scales = mxfp4.quantize(torch.nn.functional.pad(weights, (0, 16)))
    assert torch.equal(packed, padded_packed[:, :24]) and torch.equal(scales, padded_scales)
    assert torch.equal(mxfp4.dequantize(packed, scales), mxfp4.dequantize(padded_packed, padded_scales)[:, :48])


def test_error_is_bounded_by_half_a_step():
    torch.manual_seed(0)
    weights = torch.randn(64, 256)
    packed, scales = mxfp4.quantize(weights)
    restored = mxfp4.dequantize(packed, scales)
    step = torch.exp2(scales.float() - 127).repeat_interleave(32, dim=-1)  # 0.5 * scale is the finest step
    inside = weights.abs() <= 6 * step
    assert ((restored - weights).abs()[inside] <= step[inside] + 1e-6).all()


@pytest.mark.skipif(not HAS_QUARK, reason="amd-quark not installed")
def test_bit_exact_with_amd_quarks_export_of_the_tiny_model():
    from safetensors import safe_open

    from harness.local import models

    exported = models.ensure("local:tiny-qwen3/mxfp4")  # made once by amd-quark, then cached
    source = safe_open(str(models.resolve("local:tiny-qwen3/bf16") / "model.safetensors"), "pt")
    quark = safe_open(str(exported / "model.safetensors"), "pt")
    checked = 0
    for name in quark.keys():  # noqa: SIM118 - a safetensors handle, not a dict
        if not name.endswith(".weight_scale"):
            continue
        weight = name.removesuffix("_scale")
        packed, scales = mxfp4.quantize(source.get_tensor(weight))
        assert torch.equal(scales, quark.get_tensor(name)), name
        assert torch.equal(packed, quark.get_tensor(weight)), weight
        checked += 1
    assert checked == 14  # q, k, v, o, gate, up, down in 2 layers; lm_head stays high precision


def test_bit_exact_with_aiter_where_installed():
    aiter_quant = pytest.importorskip("aiter.ops.triton.quant", reason="aiter exists only on ROCm machines")
    weights = torch.randn(32, 256, device="cuda", dtype=torch.bfloat16)
    theirs_packed, theirs_scales = aiter_quant.dynamic_mxfp4_quant(weights)
    packed, scales = mxfp4.quantize(weights)
    assert torch.equal(packed, theirs_packed.view(torch.uint8)) and torch.equal(scales, theirs_scales.view(torch.uint8))


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(mxfp4_goldens.GOLDEN)


def cases_of(golden: dict[str, torch.Tensor], dtype: str) -> list[str]:
    return sorted({key.split("/")[1] for key in golden if key.startswith(dtype + "/")})


@pytest.mark.parametrize("dtype", sorted(mxfp4_goldens.DTYPES))
def test_bit_exact_with_amd_quark_on_awkward_inputs(golden, dtype):
    assert cases_of(golden, dtype) == sorted(mxfp4_goldens.awkward_cases(torch.float32))
    differing, blocks = [], 0
    for case in cases_of(golden, dtype):
        weights = golden[f"{dtype}/{case}/input"]
        assert weights.dtype == mxfp4_goldens.DTYPES[dtype]
        packed, scales = mxfp4.quantize(weights)
        quark_scales = golden[f"{dtype}/{case}/weight_scale"]
        if not torch.equal(scales, quark_scales):
            differing.append(f"{case}: {int((scales != quark_scales).sum())} scale bytes")
        if not torch.equal(packed, golden[f"{dtype}/{case}/weight"]):
            differing.append(f"{case}: {int((packed != golden[f'{dtype}/{case}/weight']).sum())} weight bytes")
        blocks += quark_scales.numel()
    assert not differing, differing
    assert blocks > 400


@pytest.mark.parametrize("dtype", sorted(mxfp4_goldens.DTYPES))
def test_the_awkward_inputs_are_awkward(golden, dtype):
    """A regenerated golden must keep what it exists for: every rule and edge appears in Quark's output."""
    weights = {case: golden[f"{dtype}/{case}/input"] for case in cases_of(golden, dtype)}
    scales = torch.cat([golden[f"{dtype}/{case}/weight_scale"].flatten() for case in weights])
    assert (scales == 1).sum() >= 3 and (scales > 127 + 10).any()  # zero blocks; scales far above 1
    blocks = torch.cat([torch.nn.functional.pad(w.float(), (0, -w.shape[-1] % 32)).reshape(-1, 32)
                        for w in weights.values()])
    assert ((blocks == 0).all(dim=1) & blocks.signbit().any(dim=1)).any()  # an all -0.0 block
    subnormal = weights["subnormals"].abs() < torch.finfo(weights["subnormals"].dtype).smallest_normal
    assert (subnormal & (weights["subnormals"] != 0)).float().mean() > 0.5
    ties = weights["ties"].float() / torch.exp2(mxfp4.scale_exponents(weights["ties"]).float()).repeat_interleave(32, -1)
    assert torch.isin(ties.abs(), torch.tensor(mxfp4_goldens.MIDPOINTS)).sum() >= 7 * 2 * 4
    assert any(w.shape[-1] % 32 for w in weights.values())
    if dtype != "fp16":  # the E8M0 top (2^127) and the overflow rule
        assert (scales == 254).any()
        top = torch.cat([w[w.float().abs() >= 1.75 * 2.0**127] for w in weights.values()])
        assert len(top) >= 4


def test_dequantize_agrees_with_quarks_own_reading(golden):
    """Quark's importer over every E8M0 byte times every E2M1 code (in both nibbles), bit for bit: the same
    everywhere but byte 0xFF, which OCP makes NaN and Quark reads as 2^128 (it never writes 0xFF itself)."""
    packed, scales = mxfp4_goldens.all_codes_block()
    theirs = golden["all_codes/dequantized"]
    ours = mxfp4.dequantize(packed, scales)
    assert torch.equal(mxfp4_goldens.bits(ours[:255]), mxfp4_goldens.bits(theirs[:255]))
    assert torch.isnan(ours[255]).all() and torch.isinf(theirs[255][mxfp4.unpack(packed[255]) % 8 != 0]).all()
    for dtype in (torch.bfloat16, torch.float16):  # one rounding, from fp32: a cast of Quark's reading
        ours = mxfp4.dequantize(packed[:255], scales[:255], dtype)
        assert torch.equal(mxfp4_goldens.bits(ours), mxfp4_goldens.bits(theirs[:255].to(dtype)))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_QUARK, reason="amd-quark not installed")
def test_the_golden_is_what_amd_quark_exports_today(request):
    """The live export (~1 min: three models through amd-quark) against the committed golden."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("re-runs amd-quark's export; select it with -m slow")
    result = subprocess.run([sys.executable, "-m", "tests.mxfp4_goldens", "--check"], cwd=ROOT, capture_output=True,
                            text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "agrees with all" in result.stdout
