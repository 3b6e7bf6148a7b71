"""The numerics eval's token set: rows of text tokenized once by the reference server, chunked into equal
windows and hashed (candidates get the reference's very token ids, read from the stored reference)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.evals.base import EvalConfig, EvalInfraError
from harness.evals.numerics.config import DEFAULT_DATASET, ROW_COUNTS


def text_rows(dataset: str, count: int, start: int = 0, data_root: Path | None = None) -> list[str]:
    """Rows `start` .. `start + count` of the text source, each ending in a blank line."""
    if dataset == "synthetic-arith-v1":
        from harness.local import problems

        rows = problems.held_out_rows(start + count)[start:]
    else:
        from harness.evals.gsm8k import read_gsm8k

        rows = read_gsm8k("train", data_root)[start:start + count]
    return [f"Question: {row['question']}\nAnswer: {row['answer']}\n\n" for row in rows]


def chunk(stream: list[int], sequences: int, window: int) -> list[list[int]]:
    """The first sequences x window tokens of the stream, as equal windows."""
    if len(stream) < sequences * window:
        raise ValueError(f"{len(stream)} tokens, {sequences * window} needed")
    return [stream[i * window:(i + 1) * window] for i in range(sequences)]


def token_digest(windows: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(windows, separators=(",", ":")).encode()).hexdigest()


def build_token_set(config: EvalConfig, base_url: str, model: str,
                    data_root: Path | None = None) -> tuple[list[list[int]], str]:
    """Tokenize rows through the server's /tokenize until the windows are full: (windows, text SHA-256)."""
    from harness.transport import ClientSettings, Request, run_requests

    needed = config.params["sequences"] * config.params["window"]
    stream: list[int] = []
    digest = hashlib.sha256()
    start, batch = 0, max(16, needed // 40)
    dataset = config.dataset or DEFAULT_DATASET  # parse_config always names one
    while len(stream) < needed:
        if start >= ROW_COUNTS[dataset]:
            raise EvalInfraError("token_set", f"numerics: {dataset} has too few tokens for {needed}")
        texts = text_rows(dataset, min(batch, ROW_COUNTS[dataset] - start), start, data_root)
        requests = [Request(str(i), "/tokenize", {"model": model, "prompt": text, "add_special_tokens": False},
                            raw=True) for i, text in enumerate(texts)]
        responses = run_requests(base_url, requests, ClientSettings(concurrency=config.concurrency))
        for text, response in zip(texts, responses):
            if response.error is not None:
                raise EvalInfraError("token_set", f"numerics: /tokenize failed: {response.error}")
            if len(stream) < needed:
                stream += json.loads(response.text or "{}")["tokens"]
                digest.update(text.encode())
        start += len(texts)
    return chunk(stream, config.params["sequences"], config.params["window"]), digest.hexdigest()
