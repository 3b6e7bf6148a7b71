"""Test double of `python -m sglang.launch_server`.

Prints SGLang-format logs (per TP rank, as in ../shared/reference/sglang.md), spawns one
"scheduler" process per TP rank and a "detokenizer", and serves the OpenAI API plus /health,
/v1/models and /server_info on the given port. FAKE_SGLANG_SCENARIO picks a fault:

  ok                  load, log, serve
  crash_during_load   traceback and exit 1 during load
  hang_before_ready   never becomes ready
  oom                 prints an out-of-memory traceback during load and stays alive
  shape_mismatch      the GLM-5 MTP eh_proj failure of #23142, then stays alive
  fp8_block           the Qwen3-Next TP4 failure of #23467, then exit 1
  exit_mid_eval       exits after FAKE_SGLANG_EXIT_AFTER completions
  aiter_first_forward the first request dies as a Quark MXFP4 forward does on CUDA (no aiter)
  stubborn_children   schedulers and a setsid grandchild ignore SIGINT and SIGTERM

FAKE_SGLANG_LATENCY_S delays every completion; with --api-key, /v1/* answers 401 without
`Authorization: Bearer KEY` (as SGLang's middleware; /health stays open).

Answers: for a prompt whose last question is "What is A plus B?", it answers correctly unless
FAKE_SGLANG_WRONG_EVERY=k makes every k-th question wrong; anything else gets "#### 0".

Prompt logprobs (the numerics eval): `/tokenize` maps each character to a token id below VOCAB, and
`/generate` with `return_logprob` answers in SGLang 0.5.17's literal shapes from a toy language model
whose next-token logits depend on the previous token only; a model path containing "noise<x>" adds a
perturbation of size x to every logit (a "quantization error"), so two cells differ as much as asked.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCENARIO = os.environ.get("FAKE_SGLANG_SCENARIO", "ok")
LOAD_S = float(os.environ.get("FAKE_SGLANG_LOAD_S", "0.2"))
COMPLETIONS = {"count": 0}
LOCK = threading.Lock()


def log(message: str, rank: str = "") -> None:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}{' ' + rank if rank else ''}] {message}", flush=True)


def record_devices(event: str, devices: str) -> None:
    """FAKE_SGLANG_DEVICE_LOG: one JSON line per start and stop with the devices this server was given."""
    path = os.environ.get("FAKE_SGLANG_DEVICE_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"event": event, "devices": devices, "time": time.time(), "pid": os.getpid()}) + "\n")


def record_pid(pid: int) -> None:
    path = os.environ.get("FAKE_SGLANG_PIDFILE")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{pid}\n")


def child(role: str, stubborn: bool) -> None:
    if stubborn:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if role == "scheduler-0":
            # A grandchild that leaves the process group: only a tree walk finds it.
            grandchild = subprocess.Popen([sys.executable, __file__, "--child", "grandchild", "--stubborn"],
                                          start_new_session=True)
            record_pid(grandchild.pid)
    started = os.environ.get("FAKE_SGLANG_PIDFILE")
    if started:  # set up (signals ignored, grandchild started): the server may now say it is ready
        open(f"{started}.{os.getppid()}.{role}", "w").close()
    while True:
        time.sleep(1)


def _gsm8k_answers() -> dict[str, str]:
    root = os.environ.get("HARNESS_DATA_DIR")
    path = os.path.join(root, "gsm8k", "test.jsonl") if root else ""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["question"]: row["answer"] for row in rows}


GSM8K = _gsm8k_answers()
GSM8K_POSITION = {question: index for index, question in enumerate(GSM8K)}


def answer(prompt: str) -> str:
    asked = re.findall(r"Question: (.*?)\nAnswer:", prompt, re.DOTALL)
    if asked and asked[-1] in GSM8K:
        # FAKE_SGLANG_GSM8K_WRONG_EVERY=k: every k-th question of the test set (by position) answered wrong.
        every = int(os.environ.get("FAKE_SGLANG_GSM8K_WRONG_EVERY", "0"))
        if every and GSM8K_POSITION[asked[-1]] % every == 0:
            return " I do not know.\n#### -1"
        return " " + GSM8K[asked[-1]]
    questions = re.findall(r"What is (\d+) plus (\d+)\?", prompt)
    if not questions:
        return " I do not know.\n#### 0"
    a, b = map(int, questions[-1])
    total = a + b
    every = int(os.environ.get("FAKE_SGLANG_WRONG_EVERY", "0"))
    if every and (a * 31 + b) % every == 0:
        total += 1
    return f" {a} plus {b} is {total}.\n#### {total}"


VOCAB = 40


def toy_logprobs(previous: int, noise: float) -> list[float]:
    """The toy model's next-token logprobs after `previous` (peaked, deterministic)."""
    import math

    logits = [4.0 * math.sin(previous * 1.7 + token * 0.9) + 2.0 * math.cos(token * 0.37)
              + noise * math.sin(previous * 3.1 + token * 5.3) for token in range(VOCAB)]
    top = max(logits)
    norm = top + math.log(sum(math.exp(v - top) for v in logits))
    return [v - norm for v in logits]


def model_noise(model_path: str) -> float:
    found = re.search(r"noise([0-9.]+)", model_path)
    return float(found.group(1).rstrip(".")) if found else 0.0


def generate_logprobs(body: dict, noise: float) -> dict:
    """`/generate` with max_new_tokens 0 and input logprobs, as SGLang 0.5.17 returns it."""
    ids, k = body["input_ids"], int(body.get("top_logprobs_num", 0))
    token_logprobs = [[None, ids[0], None]]
    top_logprobs: list = [None]
    for position in range(1, len(ids)):
        logprobs = toy_logprobs(ids[position - 1], noise)
        token_logprobs.append([logprobs[ids[position]], ids[position], None])
        ranked = sorted(range(VOCAB), key=lambda token: -logprobs[token])[:k]
        top_logprobs.append([[logprobs[token], token, None] for token in ranked])
    return {"text": "", "meta_info": {"id": "fake", "finish_reason": {"type": "length", "length": 0},
                                      "prompt_tokens": len(ids), "completion_tokens": 0,
                                      "input_token_logprobs": token_logprobs, "output_token_logprobs": [],
                                      "input_top_logprobs": top_logprobs, "output_top_logprobs": []}}


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-sglang"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        return

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refused(self) -> bool:
        key = self.server.api_key
        if key and self.path.startswith("/v1/") and self.headers.get("Authorization") != f"Bearer {key}":
            self._json(401, {"error": "invalid api key"})
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self._refused():
            return
        if self.path in ("/health", "/health_generate"):
            self._json(200, {})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server.model, "object": "model"}]})
        elif self.path in ("/server_info", "/get_server_info"):
            accept = float(os.environ.get("FAKE_SGLANG_ACCEPT", "0"))
            self._json(200, {"version": "0.0.0-fake", "tp_size": self.server.tp,
                             "internal_states": [{"avg_spec_accept_length": accept or None}]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self._refused():
            return
        time.sleep(float(os.environ.get("FAKE_SGLANG_LATENCY_S", "0")))
        with LOCK:
            COMPLETIONS["count"] += 1
            count = COMPLETIONS["count"]
        exit_after = int(os.environ.get("FAKE_SGLANG_EXIT_AFTER", "0"))
        if SCENARIO == "aiter_first_forward":
            # SGLang 0.5.17 with a Quark MXFP4 checkpoint on CUDA: it loads, then its first forward needs aiter.
            log("Scheduler hit an exception: Traceback (most recent call last):", "TP0")
            print('  File "/tmp/sglsite/sglang/srt/layers/quantization/quark/schemes/quark_w4a4_mxfp4.py", '
                  'line 497, in apply_weights', flush=True)
            print("    x_q, x_s = dynamic_mxfp4_quant(x)", flush=True)
            print("NameError: name 'dynamic_mxfp4_quant' is not defined", flush=True)
            os._exit(1)
        if SCENARIO == "exit_mid_eval" and count > exit_after:
            log("Scheduler hit an exception: Traceback (most recent call last):", "TP0")
            print("RuntimeError: fake engine died mid-eval", flush=True)
            os._exit(1)
        if self.path == "/tokenize":
            tokens = [ord(char) % VOCAB for char in body["prompt"]]
            self._json(200, {"tokens": tokens, "count": len(tokens), "max_model_len": 32768})
        elif self.path == "/generate" and body.get("return_logprob"):
            self._json(200, generate_logprobs(body, model_noise(self.server.model)))
        elif self.path == "/v1/completions":
            text = answer(body.get("prompt", ""))
            self._json(200, {"id": f"cmpl-{count}", "object": "text_completion", "model": self.server.model,
                             "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                                       "total_tokens": 10 + len(text.split())}})
        elif self.path == "/v1/chat/completions":
            prompt = "\n".join(m.get("content", "") for m in body.get("messages", []))
            text = answer(prompt).strip()
            self._json(200, {"id": f"chat-{count}", "object": "chat.completion", "model": self.server.model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                                       "total_tokens": 10 + len(text.split())}})
        else:
            self._json(404, {"error": "not found"})


def main() -> None:
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1], "--stubborn" in sys.argv)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--speculative-algorithm")
    parser.add_argument("--api-key")
    args, _ = parser.parse_known_args()
    record_pid(os.getpid())
    stubborn = SCENARIO == "stubborn_children"
    devices = os.environ.get("HIP_VISIBLE_DEVICES") or os.environ.get("CUDA_VISIBLE_DEVICES") or ""
    record_devices("start", devices)

    def stop(signum: int, frame: object) -> None:
        log(f"Received {signal.Signals(signum).name}, shutting down")
        record_devices("stop", devices)
        os._exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    roles = [f"scheduler-{r}" for r in range(args.tp)] + ["detokenizer"]
    for role in roles:
        process = subprocess.Popen([sys.executable, __file__, "--child", role] + (["--stubborn"] if stubborn else []))
        record_pid(process.pid)
    ranks = [f"TP{r}" if args.tp > 1 else "" for r in range(args.tp)]
    log(f"server_args=ServerArgs(model_path='{args.model_path}', tp_size={args.tp})")
    for rank in ranks:
        log("Load weight begin. avail mem=190.00 GB", rank)
    if SCENARIO == "crash_during_load":
        print("Traceback (most recent call last):", flush=True)
        print("ImportError: fake: cannot import name 'aiter'", flush=True)
        sys.exit(1)
    if SCENARIO == "oom":
        log("Scheduler hit an exception: Traceback (most recent call last):", ranks[0])
        print("torch.OutOfMemoryError: HIP out of memory. Tried to allocate 2.00 GiB.", flush=True)
        while True:
            time.sleep(1)
    if SCENARIO == "shape_mismatch":
        print("AssertionError: Attempted to load weight (torch.Size([6144, 6144])) into parameter "
              "(torch.Size([6144, 12288]))", flush=True)
        while True:
            time.sleep(1)
    if SCENARIO == "fp8_block":
        print("ValueError: Weight output_partition_size = 8 is not divisible by weight quantization "
              "block_n = 128.", flush=True)
        sys.exit(1)
    time.sleep(LOAD_S)
    for index, rank in enumerate(ranks):
        log(f"Load weight end. elapsed={LOAD_S:.2f} s, type=FakeMoeForCausalLM, quant=quark, "
            f"avail mem={150.0 - index * 0.1:.2f} GB, mem usage={40.0 + index * 0.1:.2f} GB.", rank)
    if args.speculative_algorithm:
        for rank in ranks:
            log("Load weight end. elapsed=0.10 s, type=FakeNextN, avail mem=149.00 GB, mem usage=1.00 GB.", rank)
    for rank in ranks:
        log("KV Cache is allocated. #tokens: 100000, KV size: 20.00 GB", rank)
        log("Memory pool end. avail mem=120.00 GB", rank)
    log("Capture target decode CUDA graph end. elapsed=0.10 s, mem usage=0.50 GB, avail mem=119.50 GB.", ranks[0])
    if SCENARIO == "hang_before_ready":
        while True:
            time.sleep(1)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.model = args.model_path
    server.tp = args.tp
    server.api_key = args.api_key
    log(f"server_args=ServerArgs(api_key={args.api_key!r})")  # as SGLang prints it: harness must redact it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("max_total_num_tokens=100000, chunked_prefill_size=8192, max_prefill_tokens=16384, "
        "max_running_requests=128, context_len=32768, available_gpu_mem=119.50 GB", ranks[0])
    pidfile = os.environ.get("FAKE_SGLANG_PIDFILE")
    waited = time.monotonic() + 30
    while pidfile and time.monotonic() < waited and not all(
            os.path.exists(f"{pidfile}.{os.getpid()}.{role}") for role in roles):
        time.sleep(0.02)  # as SGLang, ready only once its scheduler and detokenizer processes are
    log("The server is fired up and ready to roll!")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
