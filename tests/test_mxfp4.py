"""The reference MXFP4: the OCP format by hand-computed cases, and bit-exactness with amd-quark's export."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from harness.loading import mxfp4  # noqa: E402


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


def test_nan_scale_and_bad_shapes():
    packed = torch.zeros(1, 16, dtype=torch.uint8)
    assert torch.isnan(mxfp4.dequantize(packed, torch.tensor([[0xFF]], dtype=torch.uint8))).all()
    with pytest.raises(ValueError, match="multiple of 32"):
        mxfp4.quantize(torch.zeros(2, 48))


def test_error_is_bounded_by_half_a_step():
    torch.manual_seed(0)
    weights = torch.randn(64, 256)
    packed, scales = mxfp4.quantize(weights)
    restored = mxfp4.dequantize(packed, scales)
    step = torch.exp2(scales.float() - 127).repeat_interleave(32, dim=-1)  # 0.5 * scale is the finest step
    inside = weights.abs() <= 6 * step
    assert ((restored - weights).abs()[inside] <= step[inside] + 1e-6).all()


@pytest.mark.skipif(importlib.util.find_spec("quark") is None, reason="amd-quark not installed")
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
