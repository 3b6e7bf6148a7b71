"""The reference aiter kernels (harness/kernels/aiter_reference/) on a GPU: agreement there, speed and memory.

1. The quantizer goldens (aiter's Triton kernel under the interpreter) replayed on the device: bit-exact?
   (integer and bit-view ops may lower differently on CUDA than on CPU.)
2. The GEMMs and fused_moe on the device against the same calls on CPU: equal within one rounding?
3. Median wall time per call (CUDA events, after warm-up) of dynamic_mxfp4_quant, gemm_afp4wfp4 with and
   without the weight cache, a BF16 torch matmul of the same shape, and fused_moe; the weight cache's bytes.

    python benchmarks/bench_aiter_reference.py [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "harness" / "kernels" / "aiter_reference"))

from aiter import ActivationType, QuantType, _harness  # noqa: E402
from aiter.fused_moe import fused_moe  # noqa: E402
from aiter.ops.triton.gemm_afp4wfp4 import gemm_afp4wfp4  # noqa: E402
from aiter.ops.triton.quant import dynamic_mxfp4_quant  # noqa: E402
from aiter.utility.fp4_utils import e8m0_shuffle  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "aiter" / "dynamic_mxfp4_quant.safetensors"


def timed(device: str, call, repeats: int = 20) -> float:
    """Median milliseconds per call."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            import time

            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def goldens_on(device: str) -> dict:
    from safetensors.torch import load_file

    cases: dict[str, dict] = {}
    for key, tensor in load_file(str(GOLDEN)).items():
        name, part = key.rsplit("/", 1)
        cases.setdefault(name, {})[part] = tensor
    equal = compared = 0
    for case in cases.values():
        packed, scales = dynamic_mxfp4_quant(case["x"].to(device))
        equal += int((packed.cpu() == case["fp4"]).sum() + (scales.cpu() == case["scale"]).sum())
        compared += case["fp4"].numel() + case["scale"].numel()
    return {"cases": len(cases), "bytes_compared": compared, "bytes_equal": equal}


def random_mxfp4(rows: int, k: int, device: str):
    packed = torch.randint(0, 256, (rows, k // 2), dtype=torch.uint8, device=device)
    scales = torch.randint(118, 128, (rows, k // 32), dtype=torch.uint8, device=device)
    return packed, scales


def gemm_figures(device: str, quick: bool) -> list[dict]:
    rows = []
    n, k = (512, 512) if quick else (4096, 4096)
    w, w_s = random_mxfp4(n, k, device)
    w_bf16 = _harness.dequantize(w, w_s).to(torch.bfloat16)
    for m in (1, 16) if quick else (1, 16, 256, 2048):
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        x_q, x_s = dynamic_mxfp4_quant(x)
        y = torch.empty(m, n, device=device, dtype=torch.bfloat16)
        on_cpu = gemm_afp4wfp4(x_q.cpu(), w.cpu(), x_s.cpu(), w_s.cpu(), torch.bfloat16)
        on_device = gemm_afp4wfp4(x_q, w, x_s, w_s, torch.bfloat16, y).cpu()
        ulp = torch.finfo(torch.bfloat16).eps * on_cpu.float().abs()
        figures = {
            "m": m, "n": n, "k": k,
            "device_vs_cpu_within_one_bf16_ulp": bool(((on_device.float() - on_cpu.float()).abs() <= ulp).all()),
            "device_vs_cpu_equal_fraction": float((on_device == on_cpu).float().mean()),
            "quant_ms": timed(device, lambda x=x: dynamic_mxfp4_quant(x)),
            "gemm_cached_ms": timed(device, lambda x_q=x_q, x_s=x_s, y=y: gemm_afp4wfp4(x_q, w, x_s, w_s, torch.bfloat16, y)),
            "bf16_matmul_ms": timed(device, lambda x=x: x @ w_bf16.T),
        }
        os.environ["HARNESS_AITER_REFERENCE_CACHE"] = "off"
        fresh = w.clone()
        figures["gemm_uncached_ms"] = timed(device, lambda x_q=x_q, x_s=x_s, y=y, fresh=fresh: gemm_afp4wfp4(x_q, fresh, x_s, w_s, torch.bfloat16, y))
        os.environ.pop("HARNESS_AITER_REFERENCE_CACHE")
        rows.append(figures)
    cached = getattr(w, _harness._CACHE_ATTRIBUTE)[1]
    rows.append({"weight_cache_bytes": cached.numel() * cached.element_size(),
                 "packed_weight_and_scale_bytes": w.numel() + w_s.numel()})
    return rows


def moe_figures(device: str, quick: bool) -> list[dict]:
    rows = []
    experts, hidden, inter, topk = (8, 256, 128, 2) if quick else (64, 2048, 768, 8)
    w13, w13_s = random_mxfp4(experts * 2 * inter, hidden, device)
    w2, w2_s = random_mxfp4(experts * hidden, inter, device)
    w13, w2 = w13.view(experts, 2 * inter, hidden // 2), w2.view(experts, hidden, inter // 2)
    s13 = e8m0_shuffle(w13_s).view(experts, 2 * inter, -1)
    s2 = e8m0_shuffle(w2_s).view(experts, hidden, -1)
    for tokens in (1, 16) if quick else (1, 16, 256):
        x = torch.randn(tokens, hidden, device=device, dtype=torch.bfloat16)
        weights, ids = torch.softmax(torch.randn(tokens, experts, device=device), -1).topk(topk, -1)
        ids = ids.to(torch.int32)

        def call(x=x, weights=weights, ids=ids, w13=w13, w2=w2, s13=s13, s2=s2):
            return fused_moe(x, w13, w2, weights, ids, activation=ActivationType.Silu,
                             quant_type=QuantType.per_1x32, w1_scale=s13, w2_scale=s2)

        on_cpu = call(x.cpu(), weights.cpu(), ids.cpu(), w13.cpu(), w2.cpu(), s13.cpu(), s2.cpu())
        on_device = call().cpu()
        os.environ["HARNESS_AITER_REFERENCE_CACHE"] = "all"
        cached_ms = timed(device, call, repeats=5)
        os.environ.pop("HARNESS_AITER_REFERENCE_CACHE")
        rows.append({"fused_moe_all_cached_ms": cached_ms,"tokens": tokens, "experts": experts, "hidden": hidden, "inter": inter, "topk": topk,
                     "device_vs_cpu_max_abs": float((on_device.float() - on_cpu.float()).abs().max()),
                     "device_vs_cpu_equal_fraction": float((on_device == on_cpu).float().mean()),
                     "fused_moe_ms": timed(device, call, repeats=5)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke run on CPU)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
              "goldens": goldens_on(device), "gemm": gemm_figures(device, args.quick), "moe": moe_figures(device, args.quick)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
