"""The upstream code harness's reference `aiter` (harness/kernels/aiter_reference/) is checked against.

Pinned wheels, downloaded with `pip download --no-deps` into .upstream/ (`make upstream`, run at install time;
the tests never reach the network and skip, saying why, where the wheels are absent):
- amd-aiter: its Triton quantizer kernel (run under TRITON_INTERPRET=1, on CPU), `e8m0_shuffle`, and the torch
  references of its fused MoE (`torch_moe_stage1` / `torch_moe_stage2`): each file loaded by path, the
  functions taken out with `ast`, never `import aiter` (its __init__ needs ROCm);
- sglang: the Quark MXFP4 scheme modules, run on CPU through the hook (tests/test_aiter_reference.py).

The quantizer's answers are also committed as goldens (tests/golden/aiter/), so CI checks the port without
triton; this script regenerates them:

    python tools/aiter_reference.py fetch      # download the pinned wheels into .upstream/
    python tools/aiter_reference.py goldens    # rerun aiter's kernel under the interpreter, rewrite the goldens
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import os
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = Path(os.environ.get("HARNESS_UPSTREAM_DIR", ROOT / ".upstream"))
PINS = {"amd-aiter": "0.1.7.post2.dev18", "sglang": "0.5.17"}
# The exact wheels (only their Python sources are read): one file each whatever the machine's Python.
WHEELS = {
    "amd-aiter": ("amd_aiter-0.1.7.post2.dev18-py3-none-any.whl",
                  "fe139d74438217c35e87e3b961166bac8db2d381eadccb371da2e63615f05a31", []),
    "sglang": ("sglang-0.5.17-cp311-cp311-manylinux_2_34_x86_64.whl",
               "575e38f5683624ded3b4bb267f637a098e5ed37d13a1d1ff5ea09bd781a04d16",
               ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                "--platform", "manylinux_2_34_x86_64"]),
}
GOLDEN = ROOT / "tests" / "golden" / "aiter" / "dynamic_mxfp4_quant.safetensors"
SEED = 20261205

QUANT_KERNELS = "aiter/ops/triton/_triton_kernels/quant.py"
QUANT_WRAPPER = "aiter/ops/triton/quant.py"
FP4_UTILS = "aiter/utility/fp4_utils.py"
FUSED_MOE = "aiter/fused_moe.py"


# ------------------------------------------------------------------------------------------------ the wheels
def wheel(project: str) -> Path | None:
    """The pinned wheel of `project` in .upstream/, or None where `fetch` has not run."""
    path = UPSTREAM / WHEELS[project][0]
    return path if path.is_file() else None


def missing_reason(project: str) -> str:
    return f"{project}=={PINS[project]} is not in {UPSTREAM} (run `make upstream`, or tools/aiter_reference.py fetch)"


def read(project: str, member: str) -> str:
    path = wheel(project)
    if path is None:
        raise FileNotFoundError(missing_reason(project))
    with zipfile.ZipFile(path) as archive:
        return archive.read(member).decode()


def _origin(member: str) -> str:
    """The file name tracebacks show for upstream code: the wheel and the member, never a local path."""
    return f"<amd-aiter=={PINS['amd-aiter']}>/{member}"


def fetch() -> None:
    """Download the pinned wheels (pip, --no-deps, binary only) and check their sha256."""
    UPSTREAM.mkdir(parents=True, exist_ok=True)
    for project, (name, digest, platform) in WHEELS.items():
        if wheel(project) is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            *platform, f"{project}=={PINS[project]}", "-d", str(UPSTREAM)], check=True)
        found = hashlib.sha256((UPSTREAM / name).read_bytes()).hexdigest()
        if found != digest:
            raise SystemExit(f"{UPSTREAM / name}: sha256 {found}, pinned {digest}")


def functions(source: str, names: tuple[str, ...], namespace: dict, filename: str) -> dict:
    """Execute only the named top-level functions of an upstream file in `namespace` (its imports need ROCm)."""
    tree = ast.parse(source)
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    absent = set(names) - {n.name for n in nodes}
    if absent:
        raise LookupError(f"{filename} has no {sorted(absent)}")
    exec(compile(ast.Module(body=nodes, type_ignores=[]), _origin(filename), "exec"), namespace)  # noqa: S102
    return namespace


class _Silent:
    """aiter's AiterTritonLogger, without its logging set-up."""

    def info(self, *_args, **_kwargs) -> None:
        return None


# ------------------------------------------------------------------------------------------- aiter, loaded
def aiter_dynamic_mxfp4_quant() -> Callable:
    """aiter's own `dynamic_mxfp4_quant` (wrapper and Triton kernel, unchanged) under TRITON_INTERPRET=1."""
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is decorated below
    import torch
    import triton

    kernels = types.ModuleType("aiter_reference_upstream_quant_kernels")
    kernels.__file__ = QUANT_KERNELS
    exec(compile(read("amd-aiter", QUANT_KERNELS), _origin(QUANT_KERNELS), "exec"), kernels.__dict__)  # noqa: S102
    namespace = {"torch": torch, "triton": triton, "_LOGGER": _Silent(),
                 "_dynamic_mxfp4_quant_kernel": kernels._dynamic_mxfp4_quant_kernel}
    return functions(read("amd-aiter", QUANT_WRAPPER), ("dynamic_mxfp4_quant",), namespace,
                     QUANT_WRAPPER)["dynamic_mxfp4_quant"]


def _dtypes() -> types.SimpleNamespace:
    """aiter.utility.dtypes, the names its torch references read."""
    import torch

    return types.SimpleNamespace(fp32=torch.float32, fp16=torch.float16, bf16=torch.bfloat16, i32=torch.int32,
                                 fp4x2=torch.float4_e2m1fn_x2, fp8_e8m0=torch.float8_e8m0fnu)


class _DropImports(ast.NodeTransformer):
    """Removes `from aiter... import ...` inside functions: the namespace supplies those names."""

    def visit_ImportFrom(self, node: ast.ImportFrom):
        return None if (node.module or "").startswith("aiter") else node


def aiter_fp4_utils() -> types.SimpleNamespace:
    """aiter's own MXFP4 helpers (fp4_utils.py): f32_to_mxfp4, mxfp4_to_f32, f32_to_e8m0, e8m0_to_f32,
    e8m0_shuffle and what they call, executed from the wheel's source."""
    import torch

    names = ("f32_to_mxfp4", "mxfp4_to_f32", "f32_to_e8m0", "e8m0_to_f32", "e8m0_shuffle", "down_size", "pack_uint4",
             "_n_ones", "_f32_to_floatx_unpacked")
    namespace = {"torch": torch, "Tensor": torch.Tensor, "dtypes": _dtypes(), "EBITS_F32": 8, "MBITS_F32": 23,
                 "F32_EXP_BIAS": 127}
    return types.SimpleNamespace(**functions(read("amd-aiter", FP4_UTILS), names, namespace, FP4_UTILS))


def aiter_per_1x32_f4_quant() -> Callable:
    """aiter's torch mirror of its fused MoE's HIP activation quantizer (aiter/ops/quant.py:70-100)."""
    import torch

    namespace = {"torch": torch, "dtypes": _dtypes(), "fp4_utils": aiter_fp4_utils()}
    return functions(read("amd-aiter", "aiter/ops/quant.py"), ("per_1x32_f4_quant",), namespace,
                     "aiter/ops/quant.py")["per_1x32_f4_quant"]


def aiter_torch_moe_stages(quant_type, activation_type) -> tuple[Callable, Callable]:
    """aiter's torch references of its two MoE stages (fused_moe.py:1057-1240), with the reference enums."""
    import torch

    tree = _DropImports().visit(ast.parse(read("amd-aiter", FUSED_MOE)))
    names = ("torch_moe_stage1", "torch_moe_stage2", "get_inter_dim", "swiglu")
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    act = {activation_type.Silu: torch.nn.functional.silu}
    namespace = {"torch": torch, "functools": functools, "dtypes": _dtypes(), "QuantType": quant_type,
                 "ActivationType": activation_type,
                 "quant_remap": {quant_type.per_128x128: quant_type.per_1x128}, "fp4_utils": aiter_fp4_utils(),
                 "aiter": types.SimpleNamespace(get_torch_act=act.get)}
    exec(compile(ast.fix_missing_locations(ast.Module(body=nodes, type_ignores=[])), _origin(FUSED_MOE), "exec"),
         namespace)  # noqa: S102 - aiter's code
    return namespace["torch_moe_stage1"], namespace["torch_moe_stage2"]


# ------------------------------------------------------------------------------------------------ the goldens
def awkward_inputs():
    """(name, tensor) pairs: the inputs aiter's quantizer defines (finite; no value under 2^-32 of its block's
    scale beside a larger one, where the kernel shifts by 32 bits or more), awkward for a port."""
    import torch

    generator = torch.Generator().manual_seed(SEED)
    grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    cases = []
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16"), (torch.float32, "fp32")):
        info = torch.finfo(dtype)
        top = int(torch.tensor(info.max).log2().floor())
        low = int(torch.tensor(info.smallest_normal).log2())
        # Wide dynamic range: every block gets its own binade, values spread over ~2^8 inside it.
        for rows, cols in ((1, 32), (3, 64), (7, 96), (8, 1024), (33, 2048), (65, 128), (2, 4096)):
            spread = torch.randint(low + 12, top - 12, (rows, cols // 32, 1), generator=generator).float()
            x = torch.randn(rows, cols // 32, 32, generator=generator) * torch.exp2(spread)
            x = x * torch.exp2(torch.randint(-8, 1, x.shape, generator=generator).float())
            cases.append((f"{name}/wide/{rows}x{cols}", x.reshape(rows, cols).to(dtype)))
        # Ties and grid points times a power of two, with the block's largest value setting the scale.
        exponents = torch.randint(max(low, -100) + 4, min(top, 100) - 4, (64, 1), generator=generator).float()
        pick = torch.cat((grid, ties, -grid, -ties))
        values = pick[torch.randint(0, len(pick), (64, 32), generator=generator)]
        values[:, 0] = torch.where(torch.arange(64) % 2 == 0, 6.0, 4.0)
        cases.append((f"{name}/ties", (values * torch.exp2(exponents)).to(dtype)))
        # Block maxima around the scale's rounding point (1.75 * 2^k) and beyond 6 after scaling.
        mantissas = torch.linspace(1.0, 2.0, 64).unsqueeze(1)
        block = torch.randn(64, 32, generator=generator).clamp(-1.9, 1.9)
        block[:, 5] = mantissas.squeeze(1) * torch.where(torch.arange(64) % 2 == 0, 1.0, -1.0)
        cases.append((f"{name}/amax-rounding", (block * 2.0 ** 3).to(dtype)))
        # Zeros and signed zeros, whole blocks and beside others.
        zeros = torch.zeros(4, 64)
        zeros[1] = -0.0
        zeros[2, :32] = torch.randn(32, generator=generator)
        zeros[3, 33] = -0.0
        cases.append((f"{name}/zeros", zeros.to(dtype)))
        # Subnormals of the dtype, alone in their blocks and beside the smallest normals.
        step = info.smallest_normal * info.eps
        sub = torch.randint(-40, 40, (6, 64), generator=generator).float() * step
        sub[3, :32] += torch.sign(sub[3, :32]) * info.smallest_normal
        cases.append((f"{name}/subnormal", sub.to(dtype)))
        # The largest finite values (fp32: |max| rounds to inf, the scale clamps at 2^127).
        big = (torch.rand(2, 64, generator=generator) * 2 - 1) * info.max
        big[0, 0], big[1, 40] = info.max, -info.max
        cases.append((f"{name}/largest", big.to(dtype)))
    # Odd column counts aiter accepts (N/2 even): a short last block, padded by the kernel's masked load.
    for cols in (36, 100, 1028):
        cases.append((f"bf16/short-block/5x{cols}", torch.randn(5, cols, generator=generator).to(torch.bfloat16)))
    return [(name, defined(x)) for name, x in cases]


def defined(x):
    """x with every value the kernel leaves undefined on hardware set to zero: a nonzero value whose scaled
    exponent puts it 32 or more bits below E2M1's subnormal (a `>>` by 32 or more, quant.py:141). The inputs
    are finite by construction (NaN and inf are undefined there too)."""
    sys.path.insert(0, str(ROOT / "harness" / "kernels" / "aiter_reference"))
    from aiter._harness import shift_widths

    return x.masked_fill(shift_widths(x) >= 32, 0)


def interpreter_input(x):
    """What the interpreter is given for x. The kernel's first step casts its input to fp32 (quant.py:205-213),
    which hardware does exactly (BF16 is FP32's top half); triton's interpreter casts BF16 subnormals wrongly
    (triton 3.9, runtime/interpreter.py:189-234, `_convert_float`: a subnormal's exponent is clamped to 0
    after renormalising), so a BF16 input holding subnormals is given as its exact fp32 cast instead."""
    import torch

    if x.dtype == torch.bfloat16 and bool(((x != 0) & (x.abs() < torch.finfo(x.dtype).smallest_normal)).any()):
        return x.float()
    return x


def write_goldens(out: Path = GOLDEN) -> dict[str, int]:
    from safetensors.torch import save_file

    quant = aiter_dynamic_mxfp4_quant()
    tensors, counts = {}, {"cases": 0, "values": 0, "bytes": 0}
    upcast = []
    for name, x in awkward_inputs():
        packed, scales = quant(interpreter_input(x))
        if interpreter_input(x) is not x:
            upcast.append(name)
        tensors |= {f"{name}/x": x.contiguous(), f"{name}/fp4": packed.contiguous(),
                    f"{name}/scale": scales.contiguous()}
        counts["cases"] += 1
        counts["values"] += x.numel()
        counts["bytes"] += packed.numel() + scales.numel()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"generated_by": "tools/aiter_reference.py goldens", "seed": str(SEED),
                                           "amd-aiter": PINS["amd-aiter"], "kernel": QUANT_KERNELS,
                                           "given the exact fp32 cast": ",".join(upcast)})
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("fetch", "goldens"))
    args = parser.parse_args(argv)
    if args.command == "fetch":
        fetch()
        print(f"upstream wheels in {UPSTREAM}: " + ", ".join(str(wheel(p).name) for p in PINS))
    else:
        print(write_goldens())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
