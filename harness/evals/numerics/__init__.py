"""The numerics eval: a server's next-token distributions on fixed text, against a stored reference.

Protocol `topk-kld`, teacher-forced, the measurement llama.cpp's `llama-perplexity --kl-divergence` makes,
through the server: a fixed token set (rows of text tokenized once by the reference server, chunked into
`sequences` windows of `window` tokens, hashed) is sent as token ids; per position the server returns the
top-k log-probabilities of the next token and the log-probability of the token that actually follows.
Candidates get the reference's very token ids (read from the stored reference), never their own.

- SGLang: `/generate` with `input_ids`, `max_new_tokens: 0`, `return_logprob`, `logprob_start_len: 0`,
  `top_logprobs_num: k` -> `meta_info.input_token_logprobs` / `input_top_logprobs` ([logprob, id, null]
  triples; the first position null).
- vLLM: `/v1/completions` with the ids as `prompt`, `max_tokens: 1`, `prompt_logprobs: k` ->
  `choices[0].prompt_logprobs` ({id: {logprob, rank}} per position, the actual token always included).
- `transformers serve` returns no prompt logprobs: a suite that asks for this eval there is refused.

The reference (a cell's run, BF16 on the same or another engine) is stored compactly under
`baselines/references/<suite>/<cell>.numerics.npz`: the token ids, top-k ids (int32), top-k logprobs
(float16), and per position the actual token's logprob and the mass beyond the top k (float32: they
are the quantities a float16 round-off would bias), with its protocol and a SHA-256 over the arrays.

Metrics of a candidate, per sequence first (the unit of the confidence intervals and of the gate's
paired test), then the mean over sequences (all windows have the same length):
- `kld`: mean KL(reference || candidate) per position. Only the top k of each side is known, so the
  vocabulary is partitioned into buckets both sides know exactly: each token in both top-k lists, the
  actual next token, and one "other" bucket holding the rest (its mass from each side's own tail beyond
  its top k, never from 1 - sum of rounded values). Merging tokens never increases a KL divergence
  (log-sum inequality), so this is a lower bound of the full-vocabulary KLD, exact when the top k hold
  all the mass (tested against the exact value in tests/test_numerics.py).
- `top1_disagreement`: the share of positions whose most likely token differs (an exact tie in either
  distribution counts as agreement); llama.cpp prints 1 minus it as "same top p".
- `delta_p_rms`: RMS over positions of p_candidate(actual) - p_reference(actual).
- `ln_ppl_ratio`: ln(PPL candidate / PPL reference), the mean of the actual token's logprob differences.
The first two are gated (kind DIVERGENCE, config.METRICS); all four carry a t-based 95% interval.
`EVAL` registers the eval (harness.evals.registry). The package, by role: `config` (protocol, defaults, metrics,
suite keys), `engines` (which engine answers through which API), `logprobs` (each API's request and parsed
response), `tokens` (the token set), `reference` (the stored reference), `divergence` (the maths, pure),
`measure` (one server: measure, compare, the result), `promotion` (before launch and after the run).
"""

from __future__ import annotations

from harness.evals.base import Eval
from harness.evals.numerics.config import (
    GATED,
    METRICS,
    MIN_KLD,
    MIN_TOP1_DISAGREEMENT,
    NAME,
    PROTOCOL,
    PROTOCOL_KEYS,
    PROTOCOLS,
    describe,
    parse_config,
    protocol_of,
)
from harness.evals.numerics.divergence import Side, position_kld, sequence_values, summarize, top1_agreement
from harness.evals.numerics.engines import check_engine, logprob_api
from harness.evals.numerics.logprobs import PositionTopK, parse_response, request_body
from harness.evals.numerics.measure import Target, run, run_in_cell, target_for
from harness.evals.numerics.promotion import check_stored, promote_references, reference_problem, unmeasurable
from harness.evals.numerics.reference import TopKSet, load_reference, save_reference
from harness.evals.numerics.tokens import build_token_set, chunk, text_rows, token_digest

EVAL = Eval(name=NAME, protocols=PROTOCOLS, default_protocol=PROTOCOL, metrics=METRICS, parse=parse_config,
            protocol_of=protocol_of, protocol_keys=PROTOCOL_KEYS, run=run_in_cell, describe=describe,
            check_engine=check_engine, unmeasurable=unmeasurable, promote=promote_references,
            check_stored=check_stored)

__all__ = ["EVAL", "GATED", "METRICS", "MIN_KLD", "MIN_TOP1_DISAGREEMENT", "PROTOCOL",
           "PositionTopK", "Side", "Target", "TopKSet", "build_token_set", "check_engine", "check_stored", "chunk",
           "load_reference", "logprob_api", "parse_config", "parse_response", "position_kld", "promote_references",
           "protocol_of", "reference_problem", "request_body", "run", "save_reference", "sequence_values",
           "summarize", "target_for", "text_rows", "token_digest", "top1_agreement", "unmeasurable"]
