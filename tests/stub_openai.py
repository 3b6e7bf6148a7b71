"""An OpenAI-compatible stub server for eval tests and the client benchmark (plain asyncio).

    python tests/stub_openai.py --port 0 [--latency-s 0.05] [--wrong-every 10] [--fail-first]
                                [--error-every 0] [--reasoning] [--close-after-response]
                                [--retry-after S] [--reply-json FILE] [--api-key K] [--tls CERT KEY]
                                [--eos-token T] [--replies FILE]

GSM8K prompts are answered with the reference answer of the question they end with (read from
$HARNESS_DATA_DIR/gsm8k/test.jsonl), except every k-th question (--wrong-every), which gets a wrong
final number. Multiple-choice prompts get the letter of the choice that contains "CORRECT"
(synthetic GPQA). Prints "listening on PORT" once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from pathlib import Path

QUESTION = re.compile(r"(?s).*Question: (.*?)\nAnswer:")
CHOICE = re.compile(r"^([A-D])\) (.*)$", re.MULTILINE)


def load_answers() -> dict[str, tuple[int, str]]:
    """GSM8K's answers by question; none where the tests found no GSM8K (GPQA and fault tests need none)."""
    root = Path(os.environ["HARNESS_DATA_DIR"]) / "gsm8k" / "test.jsonl"
    if not root.is_file():
        return {}
    rows = [json.loads(line) for line in root.read_text().splitlines() if line.strip()]
    return {row["question"]: (index, row["answer"]) for index, row in enumerate(rows)}


class Stub:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.answers = load_answers()
        self.replies = json.loads(Path(args.replies).read_text()) if args.replies else {}
        self.attempts: dict[str, int] = {}
        self.refused: dict[str, float] = {}
        self.stats = {"first_arrival": None, "last_departure": None, "count": 0}

    def reply_text(self, prompt: str) -> tuple[str, int | None]:
        if self.replies:
            return next((text for marker, text in self.replies.items() if marker in prompt), ""), None
        choices = CHOICE.findall(prompt)
        if choices:
            letter = next((letter for letter, text in choices if "CORRECT" in text), "A")
            return f"Let me think.\nAnswer: {letter}", None
        found = QUESTION.match(prompt)
        if not found or found.group(1) not in self.answers:
            return "I do not know.", None
        index, answer = self.answers[found.group(1)]
        if self.args.wrong_every and index % self.args.wrong_every == 0:
            answer = answer.rsplit("#### ", 1)[0] + "#### " + answer.rsplit("#### ", 1)[1] + "1"
        return " " + answer, index

    async def completion(self, path: str, body: dict) -> tuple[int, dict]:
        args = self.args
        if self.stats["first_arrival"] is None:
            self.stats["first_arrival"] = time.monotonic()
        chat = path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        text, index = self.reply_text(prompt)
        if args.log_prompts and index is not None:
            with open(args.log_prompts, "a") as log:
                body_rest = {k: v for k, v in body.items() if k not in ("prompt", "messages")}
                log.write(json.dumps({"index": index, "prompt": prompt, "body": body_rest}) + "\n")
        first_attempt = False
        if args.fail_first:
            key = prompt[-200:]
            self.attempts[key] = self.attempts.get(key, 0) + 1
            first_attempt = self.attempts[key] == 1
        if args.latency_s:
            await asyncio.sleep(args.latency_s)
        if first_attempt:
            return (503 if (index or 0) % 2 else 429), {"error": "busy"}
        if args.retry_after is not None:
            # Rate-limited: 429 with Retry-After until that many seconds after the first refusal of this prompt.
            key = prompt[-200:]
            first = self.refused.setdefault(key, time.monotonic())
            if time.monotonic() - first < args.retry_after:
                return 429, {"error": "rate limited", "_headers": {"Retry-After": str(int(args.retry_after))}}
        if args.reply_json:
            with open(args.reply_json) as handle:  # a literal body, e.g. a 200 of the wrong shape
                return 200, {"_raw": handle.read()}
        if args.error_every and index is not None and index % args.error_every == 0:
            return 500, {"error": "internal"}
        if args.reasoning:
            text = "<think>Maybe the answer is 12345.</think>" + text
        usage = {"prompt_tokens": 100, "completion_tokens": len(text.split()), "total_tokens": 100}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text.strip()}, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
        self.stats["last_departure"] = time.monotonic()
        self.stats["count"] += 1
        return 200, {"id": "x", "object": "completion", "model": body.get("model"), "choices": [choice],
                     "usage": usage}

    async def route(self, method: str, path: str, body: bytes, auth: str | None) -> tuple[int, dict]:
        if self.args.api_key and auth != f"Bearer {self.args.api_key}" and not path.startswith("/health"):
            return 401, {"error": "invalid api key"}
        if method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            return await self.completion(path, json.loads(body))
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]}
        if path == "/tokenizer_info" and self.args.eos_token is not None:
            return 200, {"eos_token": self.args.eos_token}
        if path == "/health":
            return 200, {}
        if path == "/stats":
            stats = self.stats
            return 200, {"count": stats["count"], "span_s": (stats["last_departure"] or 0) - (stats["first_arrival"] or 0),
                         "first_arrival": stats["first_arrival"], "last_departure": stats["last_departure"]}
        if path == "/stats/reset":
            self.stats.update(first_arrival=None, last_departure=None, count=0)
            return 200, {}
        return 404, {"error": "not found"}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Plain asyncio streams, keep-alive: a framework server would be the bottleneck of the client benchmark.
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                fields = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
                          for line in lines[1:] if ":" in line}
                length = int(fields.get("content-length", 0))
                body = await reader.readexactly(length) if length else b""
                status, reply = await self.route(method, path, body, fields.get("authorization"))
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.pop("_headers", {}).items())
                data = reply["_raw"].encode() if "_raw" in reply else json.dumps(reply).encode()
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                if self.args.close_after_response:  # closes without saying so (no Connection: close)
                    await writer.drain()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    stub = Stub(args)
    tls = None
    if args.tls:
        import ssl

        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*args.tls)
    server = await asyncio.start_server(stub.handle, "127.0.0.1", args.port, backlog=1024, ssl=tls)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--wrong-every", type=int, default=0)
    parser.add_argument("--error-every", type=int, default=0)
    parser.add_argument("--fail-first", action="store_true")
    parser.add_argument("--reasoning", action="store_true")
    parser.add_argument("--close-after-response", action="store_true")
    parser.add_argument("--retry-after", type=float, help="429 with Retry-After: S for S seconds per prompt")
    parser.add_argument("--reply-json", help="answer every completion with this file's text, status 200")
    parser.add_argument("--api-key", help="answer 401 unless 'Authorization: Bearer KEY' is sent")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS")
    parser.add_argument("--eos-token", help="answer GET /tokenizer_info with this eos_token (as vLLM does)")
    parser.add_argument("--replies", help="a JSON object {marker: text}: a prompt containing a marker gets its text")
    parser.add_argument("--log-prompts", help="append each answered prompt as a JSON line to this file")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
