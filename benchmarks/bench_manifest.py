"""Preflight on a Kimi-K2.6-sized checkpoint: headers read and rules checked (issue 6).

Builds, once, a synthetic Quark MXFP4 header set shaped like Kimi-K2 (61 layers, 384 experts of
hidden 7168 / moe_intermediate 2048, MLA attention): about 1T parameters in 64 shards and ~200k
tensors, whose data are holes (sparse files), then reads the manifest and runs every rule in a fresh
process, timing it and taking its peak RSS. Target: under 3 s and 1 GiB.

    .venv/bin/python benchmarks/bench_manifest.py [--repeats 5] [--dir /tmp/harness-kimi-headers]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.checkpoints import MXFP4_SPEC, write_checkpoint  # noqa: E402

HIDDEN, MOE, EXPERTS, LAYERS, DENSE_LAYERS, VOCAB = 7168, 2048, 384, 61, 1, 163840
Q_LORA, KV_LORA, ROPE, HEADS, HEAD_DIM, V_DIM = 1536, 512, 64, 64, 128, 128


def mxfp4(out_features: int, in_features: int) -> dict[str, tuple[str, tuple[int, int]]]:
    return {"weight": ("U8", (out_features, in_features // 2)), "weight_scale": ("U8", (out_features, in_features // 32))}


def kimi_like_tensors(experts: int = EXPERTS) -> dict[str, tuple[str, tuple[int, ...]]]:
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {
        "language_model.model.embed_tokens.weight": ("BF16", (VOCAB, HIDDEN)),
        "language_model.lm_head.weight": ("BF16", (VOCAB, HIDDEN)),
        "language_model.model.norm.weight": ("BF16", (HIDDEN,)),
    }
    for layer in range(LAYERS):
        p = f"language_model.model.layers.{layer}"
        attention = {"q_a_proj": (Q_LORA, HIDDEN), "kv_a_proj_with_mqa": (KV_LORA + ROPE, HIDDEN),
                     "q_b_proj": (HEADS * (HEAD_DIM + ROPE), Q_LORA), "kv_b_proj": (HEADS * (HEAD_DIM + V_DIM), KV_LORA),
                     "o_proj": (HIDDEN, HEADS * V_DIM)}
        for name, (out_f, in_f) in attention.items():
            for suffix, spec in mxfp4(out_f, in_f).items():
                tensors[f"{p}.self_attn.{name}.{suffix}"] = spec
        for norm in ("input_layernorm", "post_attention_layernorm", "self_attn.q_a_layernorm", "self_attn.kv_a_layernorm"):
            tensors[f"{p}.{norm}.weight"] = ("BF16", (HIDDEN,))
        if layer < DENSE_LAYERS:
            for name, shape in {"gate_proj": (18432, HIDDEN), "up_proj": (18432, HIDDEN), "down_proj": (HIDDEN, 18432)}.items():
                for suffix, spec in mxfp4(*shape).items():
                    tensors[f"{p}.mlp.{name}.{suffix}"] = spec
            continue
        tensors[f"{p}.mlp.gate.weight"] = ("BF16", (experts, HIDDEN))
        tensors[f"{p}.mlp.gate.e_score_correction_bias"] = ("F32", (experts,))
        for expert in range(experts):
            for name, shape in {"gate_proj": (MOE, HIDDEN), "up_proj": (MOE, HIDDEN), "down_proj": (HIDDEN, MOE)}.items():
                for suffix, spec in mxfp4(*shape).items():
                    tensors[f"{p}.mlp.experts.{expert}.{name}.{suffix}"] = spec
        for name, shape in {"gate_proj": (MOE, HIDDEN), "up_proj": (MOE, HIDDEN), "down_proj": (HIDDEN, MOE)}.items():
            for suffix, spec in mxfp4(*shape).items():
                tensors[f"{p}.mlp.shared_experts.{name}.{suffix}"] = spec
    return tensors


def build(directory: Path, experts: int = EXPERTS) -> dict:
    marker = directory / "built.json"
    if marker.exists():
        return json.loads(marker.read_text())
    tensors = kimi_like_tensors(experts)
    config = {"architectures": ["KimiK25ForConditionalGeneration"], "model_type": "kimi_k25",
              "text_config": {"model_type": "kimi_k2", "architectures": ["DeepseekV3ForCausalLM"],
                              "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "n_routed_experts": EXPERTS,
                              "n_shared_experts": 1, "first_k_dense_replace": DENSE_LAYERS,
                              "moe_intermediate_size": MOE, "q_lora_rank": Q_LORA, "kv_lora_rank": KV_LORA,
                              "qk_rope_head_dim": ROPE},
              "quantization_config": {"quant_method": "quark", "exclude": ["re:.*lm_head", "re:.*mlp\\.gate$"],
                                      "global_quant_config": MXFP4_SPEC}}
    write_checkpoint(directory, config, tensors, shards=64)
    # Logical parameters: a packed uint8 holds two FP4 values.
    params = sum((2 if dtype == "U8" and not name.endswith("_scale") else 1) * math.prod(shape)
                 for name, (dtype, shape) in tensors.items())
    facts = {"tensors": len(tensors), "shards": 64, "parameters": params}
    marker.write_text(json.dumps(facts))
    return facts


CHECK = """
import json, resource, sys, time
start = time.perf_counter()
from harness.loading.launch import Launch
from harness.preflight import check_checkpoint
check = check_checkpoint("kimi", sys.argv[1], Launch(tp=8))  # what `harness run` does per cell
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "outcomes": [r.outcome.value for r in check.results],
                  "predicted_gib_per_rank": check.prediction.prequantized_mxfp4_gib}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/harness-kimi-headers"))
    parser.add_argument("--experts", type=int, default=EXPERTS,
                        help="routed experts per layer: 384 is Kimi-K2's (~140k tensors); 550 gives ~200k")
    args = parser.parse_args()
    facts = build(args.dir, args.experts)
    runs = [json.loads(subprocess.run([sys.executable, "-c", CHECK, str(args.dir)], capture_output=True, text=True,
                                      check=True, cwd=ROOT).stdout) for _ in range(args.repeats)]
    print(json.dumps({**facts, "repeats": args.repeats,
                      "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
                      "max_rss_gib_median": round(statistics.median(r["max_rss_gib"] for r in runs), 3),
                      "outcomes": runs[0]["outcomes"], "predicted_gib_per_rank": runs[0]["predicted_gib_per_rank"],
                      "disk_used_mib": round(sum(p.stat().st_blocks * 512 for p in args.dir.iterdir()) / 2**20, 1),
                      "target": {"seconds": 3.0, "max_rss_gib": 1.0}}, indent=2))


if __name__ == "__main__":
    main()
