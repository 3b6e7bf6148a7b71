"""Eval client throughput against a stub with a fixed per-request latency (issues 4 and 13).

1319 GSM8K questions at concurrency 64 and 128 against tests/stub_openai.py (--latency-s 0.05).
Ideal wall time = ceil(n / c) x latency. Side by side in one run: harness's async client,
lm-eval `local-completions` (num_concurrent equal; optional, skipped without lm-eval), and a
thread-pool client like SGLang's run_eval (requests + ThreadPoolExecutor). Each is timed by the
server-observed span (first request in to last response out) and by its own wall time (lm-eval's
includes its start-up). Target: harness within 10% of the ideal.

--pin puts the stub on CPU 0 and the clients on the other CPUs: the stub stands for a server on its own
hardware, and on a 2-core box its event loop otherwise takes CPU from the client it is meant to time.
"head" is the time from the client's start to the first request the stub sees (connection set-up of the
first wave: the stub accepts c connections).

"handwritten" is the asyncio-streams client harness used before aiohttp (benchmarks/handwritten_client.py),
run through the same run_eval. `--close` makes the stub close the connection after every response without
saying so (no `Connection: close`), as some proxies do.

    HARNESS_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_eval_client.py [--repeats 3] [--pin]
    # a realistic rate: 0.5 s per request at 64 in flight is 128 requests/s
    .venv/bin/python benchmarks/bench_eval_client.py --latency-s 0.5 --concurrency 64 --only harness --only handwritten
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HARNESS_DATA_DIR", str(ROOT.parent / "shared" / "data"))

from harness.evals.base import EvalConfig  # noqa: E402
from harness.evals.gsm8k import prepare as prepare_gsm8k  # noqa: E402
from harness.evals.registry import run_eval  # noqa: E402
from harness.transport import get_json  # noqa: E402

N = 1319


def config(protocol: str, concurrency: int) -> EvalConfig:
    return EvalConfig(name="gsm8k", protocol=protocol, shots=5, questions=N, max_tokens=256, temperature=0.0,
                      repeats=1, concurrency=concurrency)


def reset(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(url + "/stats/reset", method="POST"), timeout=5).read()


def stub_stats(url: str) -> dict:
    stats = get_json(url + "/stats")
    assert stats["count"] >= N, stats
    return stats


def harness_client(url: str, concurrency: int) -> None:
    with open(os.devnull, "w") as quiet:
        result = run_eval(config("sglang-fewshot", concurrency), url, model="stub", stream=quiet)
    assert result.request_errors == 0 and result.metrics["accuracy"].value == 1.0


def handwritten_client(url: str, concurrency: int) -> None:
    from unittest import mock

    import handwritten_client as handwritten

    with mock.patch("harness.transport.run_requests", handwritten.run_requests):
        harness_client(url, concurrency)


def thread_pool_client(url: str, concurrency: int) -> None:
    import requests

    prepared = prepare_gsm8k(config("sglang-fewshot", concurrency), "stub")
    session_per_thread: dict[int, requests.Session] = {}

    def send(request) -> str:
        import threading

        session = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        reply = session.post(url + request.path, json=request.body, timeout=600)
        return reply.json()["choices"][0]["text"]

    with ThreadPoolExecutor(concurrency) as pool:
        texts = list(pool.map(send, list(prepared.requests)))
    assert len(texts) == N


def lm_eval_client(url: str, concurrency: int) -> None:
    from harness.evals.lmeval_backend import run_lm_eval

    result = run_lm_eval(config("lm-eval", concurrency), url, model="stub")
    assert result.metrics["accuracy"].n == N


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-s", type=float, default=0.05)
    parser.add_argument("--pin", action="store_true", help="stub on CPU 0, clients on the other CPUs")
    parser.add_argument("--only", choices=["harness", "handwritten", "thread-pool", "lm-eval"], action="append")
    parser.add_argument("--concurrency", type=int, action="append", help="default: 64 and 128")
    parser.add_argument("--close", action="store_true", help="the stub closes the connection after each response")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pin_stub: list[str] = []
    if args.pin and len(cpus) >= 2:
        pin_stub = ["taskset", "-c", str(cpus[0])]
        os.sched_setaffinity(0, set(cpus[1:]))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    clients = {"harness": harness_client, "handwritten": handwritten_client, "thread-pool": thread_pool_client}
    if importlib.util.find_spec("lm_eval"):
        clients["lm-eval"] = lm_eval_client
    clients = {name: client for name, client in clients.items() if not args.only or name in args.only}
    stub = subprocess.Popen([*pin_stub, sys.executable, str(ROOT / "tests" / "stub_openai.py"), "--latency-s",
                             str(args.latency_s), *(["--close-after-response"] if args.close else [])], stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{int(stub.stdout.readline().split()[-1])}"
    report = {}
    try:
        for concurrency in args.concurrency or (64, 128):
            ideal = math.ceil(N / concurrency) * args.latency_s
            row = {"ideal_s": round(ideal, 3)}
            for name, client in clients.items():
                spans, walls, heads = [], [], []
                for _ in range(args.repeats):
                    reset(url)
                    start, start_monotonic = time.perf_counter(), time.monotonic()  # the stub's clock
                    client(url, concurrency)
                    walls.append(time.perf_counter() - start)
                    stats = stub_stats(url)
                    spans.append(stats["span_s"])
                    heads.append(stats["first_arrival"] - start_monotonic)
                row[name] = {"wall_median_s": round(statistics.median(walls), 3),
                             "wall_over_ideal": round(statistics.median(walls) / ideal, 3),
                             "server_span_median_s": round(statistics.median(spans), 3),
                             "span_over_ideal": round(statistics.median(spans) / ideal, 3),
                             "head_median_s": round(statistics.median(heads), 3),
                             "walls_s": [round(w, 3) for w in walls]}
            report[f"c={concurrency}"] = row
    finally:
        stub.kill()
        stub.wait()
    print(json.dumps({"questions": N, "latency_s": args.latency_s, "repeats": args.repeats, "cpus": len(cpus),
                      "pinned": bool(pin_stub), "stub_closes": args.close,
                      **report}, indent=2))


if __name__ == "__main__":
    main()
