"""The engines' prompt-logprob APIs: the request asking for every position's top-k logprobs, and the parsed,
checked response (harness.evals.numerics says what each engine returns)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def request_body(api: str, model: str, ids: list[int], k: int) -> tuple[str, dict[str, Any]]:
    """(path, body) asking for the prompt's per-position top-k logprobs."""
    if api == "sglang-generate":
        return "/generate", {"input_ids": ids, "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
                             "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": k}
    return "/v1/completions", {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0.0,
                               "prompt_logprobs": k}


@dataclass(frozen=True)
class PositionTopK:
    """One sequence's next-token view: row i holds the distribution that predicts token i + 1."""

    ids: np.ndarray  # [positions, k] int32, most likely first; -1 pads a vocabulary smaller than k
    logprobs: np.ndarray  # [positions, k] float64 (-inf padding)
    actual: np.ndarray  # [positions] the logprob of the token that follows
    tail: np.ndarray  # [positions] the probability mass beyond the top k


def _position(pairs: list[tuple[float, int]], actual_id: int, actual_lp: float | None, k: int,
              where: str) -> tuple[list[int], list[float], float, float]:
    ranked = sorted(pairs, key=lambda pair: -pair[0])[:k]
    lookup = {token: lp for lp, token in pairs}
    if actual_lp is None:
        if actual_id not in lookup:
            raise ValueError(f"{where}: no logprob for the actual token {actual_id}")
        actual_lp = lookup[actual_id]
    # The tail from the server's own full-precision values: 1 - sum(rounded) would bias the "other" bucket.
    tail = max(0.0, 1.0 - math.fsum(math.exp(lp) for lp, _ in ranked))
    padding = k - len(ranked)
    return ([t for _, t in ranked] + [-1] * padding, [lp for lp, _ in ranked] + [-math.inf] * padding,
            float(actual_lp), tail)


def _sglang_positions(body: dict[str, Any], ids: list[int], k: int) -> Iterator[tuple]:
    meta = body["meta_info"]
    tokens, tops = meta["input_token_logprobs"], meta["input_top_logprobs"]
    if len(tokens) != len(ids) or len(tops) != len(ids):
        raise ValueError(f"{len(tokens)} token logprobs and {len(tops)} top-k lists for {len(ids)} ids")
    for i in range(1, len(ids)):
        lp, token = tokens[i][0], tokens[i][1]
        if token != ids[i]:
            raise ValueError(f"position {i}: the logprob of token {token}, but {ids[i]} was sent")
        yield _position([(entry[0], int(entry[1])) for entry in tops[i]], ids[i], lp, k, f"position {i}")


def _vllm_positions(body: dict[str, Any], ids: list[int], k: int) -> Iterator[tuple]:
    positions = body["choices"][0]["prompt_logprobs"]
    if len(positions) != len(ids):
        raise ValueError(f"{len(positions)} prompt logprobs for {len(ids)} ids")
    for i in range(1, len(ids)):
        entries = positions[i]
        # The actual token is always listed, with its rank; only ranks 1..k are the top k.
        pairs = [(entry["logprob"], int(token)) for token, entry in entries.items() if entry["rank"] <= k]
        actual = entries.get(str(ids[i]))
        yield _position(pairs, ids[i], None if actual is None else actual["logprob"], k, f"position {i}")


def parse_response(api: str, body: dict[str, Any], ids: list[int], k: int) -> PositionTopK:
    """The per-position top-k of one response, checked against the ids that were sent."""
    import numpy as np

    rows = list((_sglang_positions if api == "sglang-generate" else _vllm_positions)(body, ids, k))
    return PositionTopK(np.asarray([r[0] for r in rows], dtype=np.int32).reshape(-1, k),
                        np.asarray([r[1] for r in rows], dtype=np.float64).reshape(-1, k),
                        np.asarray([r[2] for r in rows], dtype=np.float64),
                        np.asarray([r[3] for r in rows], dtype=np.float64))
