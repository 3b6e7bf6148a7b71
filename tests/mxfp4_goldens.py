"""Awkward MXFP4 inputs and amd-quark's real export of them: the goldens tests/test_mxfp4.py replays.

    PYTHONPATH=$PWD .venv/bin/python -m tests.mxfp4_goldens           # rewrite tests/golden/mxfp4/
    PYTHONPATH=$PWD .venv/bin/python -m tests.mxfp4_goldens --check   # export its inputs again, compare

Every case is one nn.Linear weight of a small transformers model, in BF16, FP16 and FP32 (one model per
dtype), quantized, frozen and written by amd-quark exactly as harness/local/export.py does the tiny model
(the qwen3_moe template's MXFP4 config, ModelQuantizer, freeze, export_safetensors). The golden file keeps,
per dtype and case: the input weight, Quark's packed uint8 weight and uint8 E8M0 scales; and Quark's own
dequantization (its importer's QParamsLinear) of every E8M0 byte times every E2M1 code. The inputs are
seeded; the file stores them anyway, so a torch upgrade that draws other random numbers cannot change what
CI replays.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "mxfp4" / "quark.safetensors"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # E2M1's nonzero magnitudes
MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)  # the ties between neighbouring magnitudes
SEED = 20260513


# --- the awkward inputs ---------------------------------------------------------------------------------------

class Range:
    """A float dtype's binades: normal exponents [low, top], subnormals down to 2^sub."""

    def __init__(self, dtype: torch.dtype):
        info = torch.finfo(dtype)
        self.dtype = dtype
        self.top = math.floor(math.log2(info.max))
        self.low = round(math.log2(info.smallest_normal))
        self.sub = self.low - round(-math.log2(info.eps))
        self.max = info.max

    def clip(self, exponents) -> list[int]:
        return sorted({e for e in exponents if self.sub <= e <= self.top})


def _int_view(dtype: torch.dtype) -> torch.dtype:
    return torch.int16 if torch.finfo(dtype).bits == 16 else torch.int32


def ulp_step(x: torch.Tensor, steps: int) -> torch.Tensor:
    """|x| moved by `steps` units in the last place (positive: away from zero), sign kept."""
    bits = x.abs().view(_int_view(x.dtype)) + steps
    moved = bits.clamp(min=0).view(x.dtype)
    return torch.where(x.signbit(), -moved, moved)


def cast(values, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64).to(dtype)


def anchored_blocks(anchor: float, probes: torch.Tensor) -> torch.Tensor:
    """Blocks of 32 that each start with `anchor` (which fixes the block's scale), then 31 probes (zero-padded)."""
    per_block = 31
    count = -(-probes.numel() // per_block)
    padded = torch.zeros(count * per_block, dtype=probes.dtype)
    padded[: probes.numel()] = probes
    anchors = torch.full((count, 1), anchor, dtype=probes.dtype)
    return torch.cat([anchors, padded.reshape(count, per_block)], dim=1)


def anchor_exponents(r: Range) -> list[int]:
    """Scale exponents e for blocks whose max is 6 * 2^e: E8M0's top, ordinary, and the subnormal bottom."""
    return r.clip([r.top - 2, r.top - 3, 9, 3, 0, -1, -6, r.low + 1, r.low - 1, r.low - 2, r.low - 3, r.sub + 1])


def grid_points(r: Range, rng: torch.Generator) -> torch.Tensor:
    """Exact E2M1 values times 2^e, both signs and -0, with the block max exactly 6 * 2^e (or -6 * 2^e)."""
    blocks = []
    for e in anchor_exponents(r):
        for sign in (1.0, -1.0):
            values = torch.tensor([0.0, -0.0, *GRID, *(-g for g in GRID)], dtype=torch.float64)
            filler = torch.tensor((0.0, *GRID), dtype=torch.float64)[torch.randint(0, 8, (15,), generator=rng)]
            filler = filler * torch.where(torch.rand(15, generator=rng) < 0.5, -1.0, 1.0)
            probes = torch.cat([values, filler]) * 2.0**e
            blocks.append(anchored_blocks(sign * 6 * 2.0**e, probes.to(r.dtype)))
    return torch.cat(blocks)


def ties(r: Range) -> torch.Tensor:
    """Exact midpoints between E2M1 values (ties) and their neighbours one ulp below and above, both signs."""
    blocks = []
    for e in anchor_exponents(r):
        exact = cast([m * 2.0**e for m in MIDPOINTS], r.dtype)
        probes = torch.cat([ulp_step(exact, -1), exact, ulp_step(exact, 1)])
        blocks.append(anchored_blocks(6 * 2.0**e, torch.cat([probes, -probes]).to(r.dtype)))
    return torch.cat(blocks)


def grid_neighbours(r: Range) -> torch.Tensor:
    """E2M1 values one ulp below and above (6 + ulp saturates), and values between 6 and 7 that still saturate."""
    blocks = []
    for e in anchor_exponents(r):
        exact = cast([g * 2.0**e for g in GRID], r.dtype)
        beyond = cast([v * 2.0**e for v in (6.25, 6.5, 6.75)], r.dtype)
        probes = torch.cat([ulp_step(exact, -1), ulp_step(exact, 1), beyond, ulp_step(beyond[-1:], 1)])
        blocks.append(anchored_blocks(6 * 2.0**e, torch.cat([probes, -probes])))
    return torch.cat(blocks)


def scale_thresholds(r: Range, rng: torch.Generator) -> torch.Tensor:
    """Block maxima at the scale rule's edges in binades from E8M0's top to the subnormals: 2^n, 1.5 * 2^n,
    1.75 * 2^n (rounds up to 2^(n+1)) and one ulp either side, the rest of the block random below the max."""
    binades = r.clip([r.top, r.top - 1, r.top - 2, 100, 64, 20, 3, 2, 1, 0, -1, -2, -20, -64, -100,
                      r.low + 2, r.low + 1, r.low, r.low - 1, r.low - 2, r.low - 4, r.sub + 2, r.sub])
    maxima = []
    for n in binades:
        at = cast([2.0**n, 1.5 * 2.0**n, 1.75 * 2.0**n], r.dtype)
        maxima.append(torch.cat([at, ulp_step(at, -1), ulp_step(at, 1)]))
    maxima = torch.cat(maxima)
    maxima = maxima[torch.isfinite(maxima)]
    filler = (torch.rand(len(maxima), 31, generator=rng, dtype=torch.float64) * 2 - 1) * maxima.double()[:, None]
    signs = torch.where(torch.rand(len(maxima), 1, generator=rng) < 0.5, -1.0, 1.0).to(r.dtype)
    return torch.cat([maxima[:, None] * signs, filler.to(r.dtype)], dim=1)


def powers_of_two(r: Range) -> torch.Tensor:
    """±2^k: 32 consecutive powers per block across the whole range, and blocks of one power repeated."""
    ks = torch.arange(r.sub, r.top + 1, dtype=torch.float64)
    ks = torch.cat([ks, torch.full((-len(ks) % 32,), float(r.top), dtype=torch.float64)])
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(16)
    consecutive = (torch.exp2(ks).reshape(-1, 32) * signs).to(r.dtype)
    repeated = torch.exp2(torch.tensor(r.clip(range(r.sub, r.top + 1, 7)) + [r.top, r.sub], dtype=torch.float64))
    return torch.cat([consecutive, consecutive.flip(-1), repeated[:, None].expand(-1, 32).to(r.dtype)])


def outliers(r: Range, rng: torch.Generator) -> torch.Tensor:
    """A huge value beside tiny ones (the tiny ones underflow to zero), up to the dtype's max and both signs."""
    tiny = cast([2.0**r.low, 2.0**r.sub, 3 * 2.0**r.sub, 1e-3, -1e-3, 1.0, -1.0], r.dtype)
    blocks = []
    for big in (r.max, -r.max, 2.0 ** (r.top - 1), 448.0, -1e4):
        block = torch.zeros(32, dtype=r.dtype)
        block[: len(tiny)] = tiny
        block[31] = big
        blocks.append(block)
    typical = torch.randn(24, 32, generator=rng) * 0.02
    spot = torch.randint(0, 32, (24,), generator=rng)
    typical[torch.arange(24), spot] *= torch.exp2(torch.randint(4, 14, (24,), generator=rng).float())
    return torch.cat([torch.stack(blocks), typical.to(r.dtype)])


def subnormals(r: Range, rng: torch.Generator) -> torch.Tensor:
    """Blocks of the dtype's subnormals (random mantissas), the smallest alone, and the smallest normal among them."""
    mantissa = round(-math.log2(torch.finfo(r.dtype).eps))
    bits = torch.randint(1, 2**mantissa, (6, 32), generator=rng).to(_int_view(r.dtype))
    random_subnormals = bits.view(r.dtype)
    random_subnormals[3:] = -random_subnormals[3:]
    smallest = torch.zeros(3, 32, dtype=r.dtype)
    smallest[0, 0] = 2.0**r.sub
    smallest[1, :] = -(2.0**r.sub)
    smallest[2, :] = random_subnormals[0]
    smallest[2, 7] = 2.0**r.low
    return torch.cat([random_subnormals, smallest])


def zeros(r: Range) -> torch.Tensor:
    """All-zero blocks: +0, -0 and both mixed."""
    block = torch.zeros(3, 32, dtype=r.dtype)
    block[1] = -0.0
    block[2, ::2] = -0.0
    return block


def one_nonzero(r: Range) -> torch.Tensor:
    """Blocks with a single nonzero value, at the first, second, middle and last position."""
    values = cast([1.0, -1.0, 6.0, -6.0, 0.3, -0.125, 2.0**r.low, 2.0**r.sub, -r.max, r.max], r.dtype)
    blocks = torch.zeros(4 * len(values), 32, dtype=r.dtype)
    for i, (position, value) in enumerate((p, v) for p in (0, 1, 16, 31) for v in values):
        blocks[i, position] = value
    return blocks


def fuzz(r: Range, rng: torch.Generator) -> torch.Tensor:
    """Random finite bit patterns (every binade, subnormals included), log-uniform magnitudes and typical weights."""
    width = torch.finfo(r.dtype).bits
    bits = torch.randint(-(2 ** (width - 1)), 2 ** (width - 1), (32, 32), generator=rng, dtype=torch.int64)
    patterns = bits.to(_int_view(r.dtype)).view(r.dtype)
    patterns = torch.where(torch.isfinite(patterns), patterns, torch.zeros_like(patterns))
    exponents = torch.randint(max(r.sub, -30), min(r.top, 30) - 4, (32, 1), generator=rng).double()
    log_uniform = torch.exp2(exponents - 12 * torch.rand(32, 32, generator=rng, dtype=torch.float64))
    log_uniform = log_uniform * torch.where(torch.rand(32, 32, generator=rng) < 0.5, -1.0, 1.0)
    typical = torch.randn(32, 32, generator=rng) * 0.02
    return torch.cat([patterns, log_uniform.to(r.dtype), typical.to(r.dtype)])


def awkward_cases(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Case name -> a 2-D weight [out, in] in `dtype`. Seeded: the same tensors on every run."""
    r = Range(dtype)
    rng = torch.Generator().manual_seed(SEED)
    cases: dict[str, torch.Tensor] = {
        "zeros": zeros(r),
        "one_nonzero": one_nonzero(r),
        "grid_points": grid_points(r, rng),
        "ties": ties(r),
        "grid_neighbours": grid_neighbours(r),
        "scale_thresholds": scale_thresholds(r, rng),
        "powers_of_two": powers_of_two(r),
        "outliers": outliers(r, rng),
        "subnormals": subnormals(r, rng),
        "fuzz": fuzz(r, rng),
    }
    wide = (torch.randn(4, 256, generator=rng) * 0.05).to(dtype)  # several blocks per row, several rows
    wide[1, 32:64] = 0.0  # a zero block between nonzero ones
    wide[2, 224:] = -0.0
    cases["wide"] = wide
    # Input dims that are not a multiple of 32: Quark's export pads the last block with zeros.
    cases["ragged_48"] = (torch.randn(3, 48, generator=rng)).to(dtype)
    cases["ragged_16"] = (torch.randn(2, 16, generator=rng) * 1e-2).to(dtype)
    ragged = torch.randn(2, 34, generator=rng) * 0.1
    ragged[:, 32:] = torch.tensor([[6.0, -0.0], [1e-3, 3.0]])  # the last block holds two values
    cases["ragged_34"] = ragged.to(dtype)
    return cases


# --- amd-quark: export, then its own dequantization -----------------------------------------------------------

def _model_class():
    """A transformers model that is nothing but one bias-free Linear per case (Quark's exporter wants one)."""
    from transformers import PretrainedConfig, PreTrainedModel

    class AwkwardConfig(PretrainedConfig):
        model_type = "harness_awkward"

        def __init__(self, shapes: dict[str, list[int]] | None = None, **kwargs):
            self.shapes = shapes or {}
            super().__init__(**kwargs)

    class AwkwardModel(PreTrainedModel):
        config_class = AwkwardConfig

        def __init__(self, config: AwkwardConfig):
            super().__init__(config)
            # save_pretrained reads the model's dtype off a float parameter; the Linears become uint8.
            self.norm = torch.nn.Parameter(torch.ones(1))
            self.cases = torch.nn.ModuleDict(
                {name: torch.nn.Linear(cols, rows, bias=False) for name, (rows, cols) in config.shapes.items()})

        def forward(self, input_ids=None, **kwargs):
            return [linear(torch.ones(1, linear.in_features, dtype=linear.weight.dtype))
                    for linear in self.cases.values()]

    return AwkwardConfig, AwkwardModel


def quark_export(cases: dict[str, torch.Tensor], dtype: torch.dtype, out: Path) -> dict[str, torch.Tensor]:
    """Quark's real export of the cases: {name.weight: packed uint8, name.weight_scale: E8M0 uint8}."""
    from quark.torch import LLMTemplate, ModelQuantizer, export_safetensors
    from safetensors.torch import load_file

    config_class, model_class = _model_class()
    model = model_class(config_class(shapes={n: list(w.shape) for n, w in cases.items()})).to(dtype).eval()
    with torch.no_grad():
        for name, weight in cases.items():
            model.cases[name].weight.copy_(weight)
    # As harness/local/export.py: the template's MXFP4 config, calibrate, freeze, export.
    quantizer = ModelQuantizer(LLMTemplate.get("qwen3_moe").get_config(scheme="mxfp4"))
    with torch.no_grad():
        model = quantizer.quantize_model(model, [torch.zeros(1, 1, dtype=torch.long)])
        model = quantizer.freeze(model)
    export_safetensors(model, out, custom_mode="quark")
    exported = load_file(out / "model.safetensors")
    return {key.removeprefix("cases."): tensor for key, tensor in exported.items() if key.startswith("cases.")}


def all_codes_block() -> tuple[torch.Tensor, torch.Tensor]:
    """Every E8M0 byte (one block each) times every E2M1 code in both nibbles: packed [256, 16], scales [256, 1]."""
    codes = torch.cat([torch.arange(16), torch.arange(1, 17) % 16]).to(torch.uint8)  # 2nd half: the other nibble
    packed = (codes[0::2] | (codes[1::2] << 4)).expand(256, -1).contiguous()
    return packed, torch.arange(256, dtype=torch.uint8)[:, None].contiguous()


def quark_dequantize(dtype: torch.dtype, export_dir: Path, workdir: Path) -> torch.Tensor:
    """Quark's own reading of MXFP4 (its importer's QParamsLinear) over every scale byte and code: a copy of
    the export's config beside a checkpoint holding `all_codes_block`, imported into a fresh model."""
    import shutil

    from quark.torch import import_model_from_safetensors
    from safetensors.torch import save_file

    packed, scales = all_codes_block()
    checkpoint = workdir / "all-codes"
    checkpoint.mkdir(parents=True)
    shutil.copy(export_dir / "config.json", checkpoint / "config.json")
    save_file({"norm": torch.ones(1, dtype=dtype), "cases.all_codes.weight": packed,
               "cases.all_codes.weight_scale": scales}, checkpoint / "model.safetensors")
    config_class, model_class = _model_class()
    model = model_class(config_class(shapes={"all_codes": [256, 32]})).to(dtype).eval()
    model = import_model_from_safetensors(model, str(checkpoint))
    with torch.no_grad():
        return model.cases.all_codes._get_qweight(model.cases.all_codes.weight)


def build(inputs: dict[str, dict[str, torch.Tensor]], workdir: Path) -> dict[str, torch.Tensor]:
    """{dtype label: {case: weight}} -> the golden's tensors, through amd-quark."""
    tensors: dict[str, torch.Tensor] = {}
    readings: dict[str, torch.Tensor] = {}
    for label, cases in inputs.items():
        out = workdir / label
        exported = quark_export(cases, DTYPES[label], out)
        for name, weight in cases.items():
            tensors[f"{label}/{name}/input"] = weight.contiguous()
            tensors[f"{label}/{name}/weight"] = exported[f"{name}.weight"].contiguous()
            tensors[f"{label}/{name}/weight_scale"] = exported[f"{name}.weight_scale"].contiguous()
        readings[label] = quark_dequantize(DTYPES[label], out, workdir / f"{label}-read").contiguous()
    # Quark dequantizes in fp32 whatever the model's dtype: one table serves all three (kept once).
    if any(not torch.equal(bits(r), bits(readings["bf16"])) for r in readings.values()):
        raise SystemExit("Quark's dequantization now depends on the model's dtype: store one table per dtype")
    tensors["all_codes/dequantized"] = readings["bf16"]
    return tensors


def recorded_inputs(golden: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    inputs: dict[str, dict[str, torch.Tensor]] = {label: {} for label in DTYPES}
    for key, tensor in golden.items():
        if key.endswith("/input"):
            label, case, _ = key.split("/")
            inputs[label][case] = tensor
    return inputs


def metadata() -> dict[str, str]:
    """One key: safetensors writes several in a random order, and a regenerated file should be byte-identical."""
    from importlib.metadata import version

    return {"made_by": f"python -m tests.mxfp4_goldens with amd-quark {version('amd-quark')}, "
                       f"torch {torch.__version__}, transformers {version('transformers')}"}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes, so that -0.0 differs from +0.0."""
    return t.contiguous().view(torch.uint8)


def differences(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> list[str]:
    lines = [f"{key}: missing" for key in sorted(expected.keys() - actual.keys())]
    lines += [f"{key}: not in the golden" for key in sorted(actual.keys() - expected.keys())]
    for key in sorted(expected.keys() & actual.keys()):
        a, b = expected[key], actual[key]
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(bits(a), bits(b)):
            lines.append(f"{key}: differs")
    return lines


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file, save_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="export the recorded inputs again and compare Quark's output with the golden")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args(argv)
    if args.check:
        golden = load_file(args.out)
        with tempfile.TemporaryDirectory() as tmp:
            tensors = build(recorded_inputs(golden), Path(tmp))
        lines = differences(golden, tensors)
        print("\n".join(lines) or f"{args.out}: amd-quark's live export agrees with all {len(tensors)} tensors")
        return 1 if lines else 0
    with tempfile.TemporaryDirectory() as tmp:
        tensors = build({label: awkward_cases(dtype) for label, dtype in DTYPES.items()}, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, args.out, metadata=metadata())
    print(f"wrote {args.out}: {len(tensors)} tensors, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
