"""The tiny model's RSS on the CPU as it sees new batch shapes (docs/memory.md, "The local suite").

Loads models/tiny-qwen3 (BF16) with transformers, no server, and runs 300 forwards of random token counts 1-400
(or one count, `--same`), printing the RSS after loading and after every 100. Set oneDNN's cache variables
(ONEDNN_PRIMITIVE_CACHE_CAPACITY, LRU_CACHE_CAPACITY) or MALLOC_ARENA_MAX in its environment to compare.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_cpu_shape_rss.py [--same] [--no-mkldnn] [--trim]
"""

from __future__ import annotations

import argparse
import ctypes
import random
from pathlib import Path

import psutil
import torch
from transformers import AutoModelForCausalLM

MODEL = Path(__file__).resolve().parent.parent / "models" / "tiny-qwen3"


def rss_mib() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--same", action="store_true", help="one token count (200) every time")
    parser.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) at the end (glibc)")
    parser.add_argument("--forwards", type=int, default=300)
    args = parser.parse_args()
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.bfloat16).eval()
    print("loaded", rss_mib())
    rng = random.Random(0)
    with torch.no_grad():
        for index in range(args.forwards):
            tokens = 200 if args.same else rng.randint(1, 400)
            model(torch.randint(0, model.config.vocab_size, (1, tokens)))
            if index % 100 == 99:
                print(index + 1, "forwards", rss_mib())
    if args.trim:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        print("after malloc_trim", rss_mib())


if __name__ == "__main__":
    main()
