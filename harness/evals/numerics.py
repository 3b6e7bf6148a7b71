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
The first two are gated (kind DIVERGENCE, METRICS below); all four carry a t-based 95% interval.
`EVAL` registers the eval (harness.evals.registry).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from harness.evals.base import Eval, EvalConfig, EvalContext, EvalInfraError, ProtocolDefaults
from harness.metric_kinds import MetricDef, MetricKind
from harness.strict import Where

if TYPE_CHECKING:
    import numpy as np

    from harness.matrix import Cell
    from harness.results import CellError, CellResult, EvalResult

NAME = "numerics"
PROTOCOL = "topk-kld"
TAIL_RULE = "bucket-lower-bound"  # recorded in every protocol: how the mass beyond the top k is handled
REFERENCE_KIND = "harness.numerics_reference"
REFERENCE_SCHEMA_VERSION = 1
ROW_COUNTS = {"synthetic-arith-v1": 100_000, "gsm8k-train": 7473}  # rows each text source can give
DEFAULT_DATASET = "gsm8k-train"
DEFAULTS = {"sequences": 64, "window": 128, "top_logprobs": 20}
GATED = ("kld", "top1_disagreement")
# The smallest rises that count: 4x the largest difference measured between fresh installs and runs of vLLM's
# CPU build (benchmarks/bench_numerics_noise.py, its record in benchmarks/results/numerics-noise.json: run to run
# 0; a fresh install on another CPU model against references recorded on an AMD EPYC, up to KLD 0.00112 and
# top-1 disagreement 0.00185, significant at p < 0.001), rounded up; far below what MXFP4 itself costs the tiny
# model (KLD 0.115) and under what its subtle planted defect adds (+0.015).
MIN_KLD = 0.005
MIN_TOP1_DISAGREEMENT = 0.01
METRICS = (
    MetricDef("numerics.kld", MetricKind.DIVERGENCE,
              "mean KL(reference || candidate) of next-token distributions per position (top-k bucket bound)",
              min_effect=MIN_KLD),
    MetricDef("numerics.top1_disagreement", MetricKind.DIVERGENCE,
              "share of positions whose most likely next token differs from the reference's",
              min_effect=MIN_TOP1_DISAGREEMENT),
)
# Teacher-forced next-token distributions: no shots, token ids in, one position's distribution per token.
PROTOCOLS = {PROTOCOL: ProtocolDefaults(shots=0, shots_source="none", prompt_mode="token-ids", max_tokens=1)}
PROTOCOL_KEYS = ("eval", "protocol", "dataset", "dataset_sha256", "sequences", "window", "top_logprobs", "tail",
                 "reference", "token_sha256", "reference_sha256")
REPORTED = ("delta_p_rms", "ln_ppl_ratio")
_KEYS = ("protocol", "dataset", "sequences", "window", "top_logprobs", "reference", "concurrency",
         "request_timeout_s", "max_error_rate")
_FLOOR = 1e-12  # the smallest bucket mass a candidate is credited with: an "other" mass of 0 is a rounding


# --- configuration and protocol ----------------------------------------------------------------------------

def parse_config(value: Any, where: Where) -> EvalConfig:
    """The suite's `evals.numerics` mapping, strictly."""
    from harness import strict

    doc = strict.mapping(value, where, allowed=_KEYS, required=("protocol", "reference"))
    strict.choice(doc["protocol"], where.key("protocol"), what="numerics protocol", choices=(PROTOCOL,))
    dataset = strict.choice(doc.get("dataset", DEFAULT_DATASET), where.key("dataset"), what="numerics dataset",
                            choices=ROW_COUNTS)
    params: dict[str, Any] = {key: strict.integer(doc.get(key, default), where.key(key), minimum=1)
                              for key, default in DEFAULTS.items()}
    if params["window"] < 2:
        raise where.key("window").error("a window needs at least 2 tokens (the first is only context)")
    params["reference"] = strict.string(doc["reference"], where.key("reference"))
    return EvalConfig(
        name=NAME, protocol=PROTOCOL, shots=0, questions=params["sequences"], max_tokens=1, temperature=0.0,
        repeats=1, dataset=dataset, params=params,
        concurrency=strict.integer(doc.get("concurrency", 16), where.key("concurrency"), minimum=1),
        request_timeout_s=strict.number(doc.get("request_timeout_s", 600.0), where.key("request_timeout_s"),
                                        minimum=1.0),
        max_error_rate=strict.number(doc.get("max_error_rate", 0.0), where.key("max_error_rate"), minimum=0.0,
                                     maximum=1.0),
    )


def logprob_api(engine: str) -> tuple[str | None, str]:
    """How the engine returns prompt logprobs (its spec's `logprob_api`, harness.engine_specs), else None and
    why not."""
    from harness.engine_specs import ENGINES

    spec = ENGINES.get(engine)
    if spec is None or spec.logprob_api is None:
        return None, (spec.no_logprobs if spec and spec.no_logprobs
                      else f"no prompt-logprob API is known for engine '{engine}'")
    return spec.logprob_api, ""


def check_engine(engine: str, where: Where) -> None:
    """Refuse, at load time, an engine that cannot return prompt logprobs."""
    from harness.engine_specs import ENGINES

    api, reason = logprob_api(engine)
    if api is None:
        able = sorted(name for name, spec in ENGINES.items() if spec.logprob_api)
        raise where.error(f"the numerics eval is not supported by engine '{engine}': {reason}; "
                          f"use engine {' or '.join(able)}")


def protocol_of(config: EvalConfig, *, dataset_sha256: str | None = None, token_sha256: str | None = None,
                reference_sha256: str | None = None) -> dict[str, Any]:
    """What must match for two numerics figures to compare (the hashes are known once measured)."""
    params = config.params
    return {"eval": NAME, "protocol": config.protocol, "dataset": config.dataset, "dataset_sha256": dataset_sha256,
            "sequences": params["sequences"], "window": params["window"], "top_logprobs": params["top_logprobs"],
            "tail": TAIL_RULE, "reference": params["reference"], "token_sha256": token_sha256,
            "reference_sha256": reference_sha256}


RECORD_FILE = "numerics-reference.npz"  # in the reference cell's directory of a run


def require_numpy() -> None:
    """One line instead of a traceback where the optional extra is missing."""
    import importlib.util

    from harness.errors import ConfigError

    if importlib.util.find_spec("numpy") is None:
        raise ConfigError("the numerics eval needs numpy in harness's environment: "
                          "pip install 'sglang-harness[numerics]'")


def describe(config: EvalConfig) -> str:
    """`numerics:topk-kld/64x128 tokens/top-20 vs m/bf16/none/tp1`, for `harness list`."""
    params = config.params
    return (f"{NAME}:{config.protocol}/{params['sequences']}x{params['window']} tokens/top-{params['top_logprobs']} "
            f"vs {params['reference']}")


def stored_reference_path(config: EvalConfig, references: Path) -> Path:
    """Where `harness baseline update` stores the eval's reference: `references` is
    baselines/references/<the suite's baselines name>; `reference: other-suite:cell` reads another suite's."""
    from harness.results import cell_dir_name

    suite, separator, cell_id = config.params["reference"].rpartition(":")
    folder = references.parent / suite if separator else references
    return folder / f"{cell_dir_name(cell_id)}.numerics.npz"


def is_reference_cell(cell: Cell, config: EvalConfig, references: Path) -> bool:
    return config.params["reference"] in (cell.id, f"{references.name}:{cell.id}")


def usable_reference(config: EvalConfig, references: Path) -> tuple[TopKSet | None, str | None]:
    """(the stored reference, None), or (None, why there is none that fits this eval)."""
    path = stored_reference_path(config, references)
    if not path.exists():
        return None, f"no stored reference {path}"
    reference = load_reference(path)
    mismatch = reference_mismatch(reference, config)
    return (None, f"the stored reference {path} does not fit: {mismatch}") if mismatch else (reference, None)


def unmeasurable(cell: Cell, references: Path) -> CellError | None:
    """The cell's numerics eval has no stored reference to measure against: it is not launched (CONFIG_ERROR)."""
    from harness.results import CellError

    problem = reference_problem(cell, references)
    return None if problem is None else CellError("numerics_reference", problem)


def reference_problem(cell: Cell, references: Path) -> str | None:
    """Why a cell's numerics eval could not measure anything (checked before launch), or None.

    The reference cell itself runs without a stored reference: it records the one to promote."""
    require_numpy()
    for config in cell.evals:
        if config.name != NAME or is_reference_cell(cell, config, references):
            continue
        _, problem = usable_reference(config, references)
        if problem:
            return (f"numerics: {problem}; run the reference cell {config.params['reference']} and promote its "
                    f"distributions (harness baseline update --from reports/<run> --cell '{config.params['reference']}')")
    return None


def target_for(cell: Cell, config: EvalConfig, cell_dir: Path, references: Path | None) -> Target:
    """The cell's reference (None where there is none yet) and, for the reference cell, where to record."""
    reference = usable_reference(config, references)[0] if references is not None else None
    recording = references is None or is_reference_cell(cell, config, references)
    meta = {"cell": cell.id, "suite": cell.suite, "engine": cell.engine, "model_path": cell.checkpoint.path}
    return Target(cell.engine, reference, cell_dir / RECORD_FILE if recording else None, meta)


# --- the token set ------------------------------------------------------------------------------------------

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


# --- requests and responses ------------------------------------------------------------------------------

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


# --- the reference artifact -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TopKSet:
    """Every sequence's PositionTopK as arrays: ids/logprobs [S, P, k], actual/tail [S, P] (P = window - 1)."""

    token_ids: np.ndarray  # [S, window] int32
    ids: np.ndarray
    logprobs: np.ndarray
    actual: np.ndarray
    tail: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def stored(self) -> TopKSet:
        """As a reference keeps it: top-k logprobs in float16, the rest as is (int32 / float32)."""
        import numpy as np

        return TopKSet(self.token_ids.astype(np.int32), self.ids.astype(np.int32),
                       self.logprobs.astype(np.float16), self.actual.astype(np.float32),
                       self.tail.astype(np.float32), dict(self.meta))

    def digest(self) -> str:
        """SHA-256 over the arrays (dtype, shape and bytes), the reference's identity in every protocol."""
        digest = hashlib.sha256()
        for name in _ARRAYS:
            array = getattr(self, name)
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


_ARRAYS = ("token_ids", "ids", "logprobs", "actual", "tail")


def stack(windows: list[list[int]], measured: list[PositionTopK], meta: dict[str, Any]) -> TopKSet:
    import numpy as np

    return TopKSet(np.asarray(windows, dtype=np.int32), np.stack([m.ids for m in measured]),
                   np.stack([m.logprobs for m in measured]), np.stack([m.actual for m in measured]),
                   np.stack([m.tail for m in measured]), meta)


def save_reference(path: Path, topk: TopKSet) -> str:
    """Write the stored form (atomically); returns its digest."""
    import numpy as np

    stored = topk.stored()
    digest = stored.digest()
    meta = {"kind": REFERENCE_KIND, "schema_version": REFERENCE_SCHEMA_VERSION, **stored.meta, "sha256": digest}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.npz")
    np.savez_compressed(tmp, meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
                        **{name: getattr(stored, name) for name in _ARRAYS})
    tmp.replace(path)
    return digest


def load_reference(path: Path) -> TopKSet:
    """A stored reference, its kind, version and digest checked (a one-line ConfigError otherwise)."""
    import numpy as np

    from harness.errors import ConfigError

    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
            reference = TopKSet(**{name: archive[name] for name in _ARRAYS}, meta=meta)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such numerics reference") from None
    except (OSError, KeyError, ValueError) as problem:
        raise ConfigError(f"{path}: not a numerics reference: {' '.join(str(problem).split())}") from None
    if meta.get("kind") != REFERENCE_KIND or meta.get("schema_version") != REFERENCE_SCHEMA_VERSION:
        raise ConfigError(f"{path}: kind/schema_version: expected {REFERENCE_KIND} v{REFERENCE_SCHEMA_VERSION}")
    if reference.digest() != meta.get("sha256"):
        raise ConfigError(f"{path}: sha256: the arrays do not match the recorded digest (a damaged file)")
    return reference


def reference_mismatch(reference: TopKSet, config: EvalConfig) -> str | None:
    """Why a stored reference cannot serve this eval's protocol, or None."""
    recorded = reference.meta.get("protocol", {})
    wanted = protocol_of(config)
    for key in ("dataset", "sequences", "window", "top_logprobs"):
        if recorded.get(key) != wanted[key]:
            return f"it was recorded with {key} {recorded.get(key)!r}, the suite asks {wanted[key]!r}"
    return None


# --- statistics (pure) ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    """One side's view of one sequence: ids/logprobs [P, k] (most likely first), actual/tail [P]."""

    ids: np.ndarray
    logprobs: np.ndarray
    actual: np.ndarray
    tail: np.ndarray


def _xlogy_ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p * ln(p / q) with 0 ln 0 = 0 and q floored at _FLOOR (no warnings, no infinities)."""
    import numpy as np

    positive = p > 0
    safe_p = np.where(positive, p, 1.0)
    return np.where(positive, p * (np.log(safe_p) - np.log(np.maximum(q, _FLOOR))), 0.0)


def _buckets(side: Side, shared: np.ndarray, actual_ids: np.ndarray,
             separate: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This side's masses on the buckets: (top-k entries shared with the other side [P, k] (0 elsewhere),
    the actual token where it is its own bucket [P], the other bucket [P]), not yet normalized."""
    import numpy as np

    probs = np.exp(side.logprobs)  # -inf padding -> 0
    is_actual = side.ids == actual_ids[:, None]
    in_top = is_actual.any(axis=1)
    # The actual token's mass from its top-k entry where it has one, so that moving it cancels exactly.
    actual = np.where(in_top, np.where(is_actual, probs, 0.0).sum(axis=1), np.exp(side.actual))
    actual = np.where(separate, actual, 0.0)
    # Other: the tail beyond the top k, plus the top-k entries the other side does not list, less the
    # actual token when it has its own bucket (it lives in one of those two).
    unshared = np.where(shared, 0.0, probs).sum(axis=1)
    other = np.maximum(side.tail + unshared - actual, 0.0)
    return np.where(shared, probs, 0.0), actual, other


def position_kld(reference: Side, candidate: Side, actual_ids: np.ndarray) -> np.ndarray:
    """KL(reference || candidate) per position over the buckets both sides know (see the module docstring):
    a lower bound of the full-vocabulary value, equal to it when the top k hold all the mass."""
    import numpy as np

    match = (reference.ids[:, :, None] == candidate.ids[:, None, :]) & (reference.ids[:, :, None] >= 0)
    shared_ref, shared_cand = match.any(axis=2), match.any(axis=1)
    in_both = ((reference.ids == actual_ids[:, None]) & shared_ref).any(axis=1)
    separate = ~in_both  # the actual token is a bucket of its own unless both top-k lists hold it
    p_top, p_actual, p_other = _buckets(reference, shared_ref, actual_ids, separate)
    q_top_own, q_actual, q_other = _buckets(candidate, shared_cand, actual_ids, separate)
    # The candidate's mass of each shared reference entry, in the reference's order.
    q_top = np.take_along_axis(q_top_own, match.argmax(axis=2), axis=1) * shared_ref
    p_norm = p_top.sum(axis=1) + p_actual + p_other  # float16 logprobs: renormalize, never leave a residue
    q_norm = q_top.sum(axis=1) + q_actual + q_other
    p_top, p_actual, p_other = p_top / p_norm[:, None], p_actual / p_norm, p_other / p_norm
    q_top, q_actual, q_other = q_top / q_norm[:, None], q_actual / q_norm, q_other / q_norm
    return (_xlogy_ratio(p_top, q_top).sum(axis=1) + _xlogy_ratio(p_actual, q_actual)
            + _xlogy_ratio(p_other, q_other))


def top1_agreement(reference: Side, candidate: Side) -> np.ndarray:
    """Per position: the most likely tokens agree, or the other one ties with it on either side."""
    import numpy as np

    ref_top, cand_top = reference.ids[:, 0], candidate.ids[:, 0]
    ref_at_cand_top = np.where(reference.ids == cand_top[:, None], reference.logprobs, -np.inf).max(axis=1)
    cand_at_ref_top = np.where(candidate.ids == ref_top[:, None], candidate.logprobs, -np.inf).max(axis=1)
    return ((ref_top == cand_top) | (ref_at_cand_top >= reference.logprobs[:, 0])
            | (cand_at_ref_top >= candidate.logprobs[:, 0]))


def sequence_values(reference: Side, candidate: Side, actual_ids: np.ndarray) -> dict[str, float]:
    """One sequence's figures (means over its positions); delta_p_rms holds the mean square until summarized."""
    import numpy as np

    delta_p = np.exp(candidate.actual) - np.exp(reference.actual)
    return {"kld": float(position_kld(reference, candidate, actual_ids).mean()),
            "top1_disagreement": float(1.0 - top1_agreement(reference, candidate).mean()),
            "delta_p_rms": float(np.mean(delta_p * delta_p)),
            "ln_ppl_ratio": float(np.mean(reference.actual - candidate.actual))}


def summarize(per_sequence: dict[str, dict[str, float]]) -> dict[str, tuple[float, float | None, tuple]]:
    """metric -> (value, SE, 95% interval) from per-sequence values; delta_p_rms as the root of the mean
    square, its interval the roots of the mean square's (SE is then left out)."""
    from harness.stats import mean_estimate

    out: dict[str, tuple[float, float | None, tuple]] = {}
    for metric in (*GATED, *REPORTED):
        estimate = mean_estimate([values[metric] for values in per_sequence.values()])
        if metric == "delta_p_rms":
            low, high = estimate.ci95
            out[metric] = (math.sqrt(max(estimate.mean, 0.0)), None,
                           (math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0))))
        else:
            out[metric] = (estimate.mean, estimate.stderr, estimate.ci95)
    return out


# --- the run: one server ---------------------------------------------------------------------------------

class _Progress:
    """Sequences done, on the eval progress line's schedule (harness.evals.progress)."""

    def __init__(self, total: int, stream: TextIO | None):
        from harness.evals.progress import Progress

        self.inner = Progress(f"{NAME}/{PROTOCOL}", total, stream=stream)
        self.inner.line = self.line  # type: ignore[method-assign]

    def line(self, now: float | None = None) -> str:
        inner = self.inner
        elapsed = max((now or time.monotonic()) - inner.start, 1e-9)
        return (f"{inner.label}: {inner.done}/{inner.total} sequences, {inner.done / elapsed:.1f} seq/s, "
                f"{inner.errors} failed requests")


def sequence_id(index: int) -> str:
    return f"seq-{index:04d}"


def measure(api: str, base_url: str, model: str, windows: list[list[int]], config: EvalConfig,
            stream: TextIO | None = None) -> tuple[dict[str, PositionTopK], list[str], float]:
    """Every window's per-position top-k: (by sequence id, the errors of failed requests, wall seconds)."""
    from harness.transport import ClientSettings, Request, Response, run_requests

    k = config.params["top_logprobs"]
    by_id = {sequence_id(i): window for i, window in enumerate(windows)}
    requests = [Request(sid, *request_body(api, model, window, k), raw=True) for sid, window in by_id.items()]
    measured: dict[str, PositionTopK] = {}
    errors: list[str] = []
    progress = _Progress(len(requests), stream)

    def on_done(response: Response) -> None:
        error = response.error
        if error is None:
            try:  # parsed at once: a response's JSON is ~50 bytes per entry, the arrays 6
                measured[response.id] = parse_response(api, json.loads(response.text or ""), by_id[response.id], k)
            except (KeyError, IndexError, TypeError, ValueError) as problem:
                error = f"{response.id}: malformed logprobs: {type(problem).__name__}: {problem}"
        if error is not None:
            errors.append(error)
        progress.inner.update(None if error is not None else True)

    allowed = math.floor(config.max_error_rate * len(requests) + 1e-9)
    settings = ClientSettings(concurrency=config.concurrency, timeout_s=config.request_timeout_s, max_errors=allowed)
    start = time.perf_counter()
    run_requests(base_url, requests, settings, on_done)
    return measured, errors, time.perf_counter() - start


def compare_sets(reference: TopKSet, measured: dict[str, PositionTopK]) -> dict[str, dict[str, float]]:
    """Per-sequence values of every measured sequence against the reference's."""
    import numpy as np

    values = {}
    for index in range(reference.token_ids.shape[0]):
        sid = sequence_id(index)
        if sid not in measured:
            continue
        ref = Side(reference.ids[index], reference.logprobs[index].astype(np.float64),
                   reference.actual[index].astype(np.float64), reference.tail[index].astype(np.float64))
        cand = measured[sid]
        values[sid] = sequence_values(ref, Side(cand.ids, cand.logprobs, cand.actual, cand.tail),
                                      reference.token_ids[index, 1:])
    return values


@dataclass(frozen=True)
class Target:
    """Where one cell's numerics eval reads its reference and, for the reference cell, records its own."""

    engine: str
    reference: TopKSet | None
    record: Path | None = None
    recorded_meta: dict[str, Any] = field(default_factory=dict)  # cell, engine, run facts for the record


def run(config: EvalConfig, base_url: str, *, model: str, target: Target, data_root: Path | None = None,
        stream: TextIO | None = None) -> EvalResult:
    """Measure the cell's next-token distributions; record them (reference cell) and compare them with the
    stored reference. Raises EvalInfraError when more requests failed than allowed."""
    from harness.errors import ConfigError

    api, reason = logprob_api(target.engine)
    if api is None:
        raise ConfigError(f"numerics: not supported by engine '{target.engine}': {reason}")
    require_numpy()
    if target.reference is not None:
        windows = target.reference.token_ids.tolist()
        dataset_sha256 = target.reference.meta["protocol"]["dataset_sha256"]
    else:
        windows, dataset_sha256 = build_token_set(config, base_url, model, data_root)
    measured, errors, wall = measure(api, base_url, model, windows, config, stream)
    token_sha256 = token_digest(windows)
    reference_sha256 = None if target.reference is None else target.reference.meta["sha256"]
    protocol = protocol_of(config, dataset_sha256=dataset_sha256, token_sha256=token_sha256,
                           reference_sha256=reference_sha256)
    details: dict[str, Any] = {"api": api, "tokens": {"prompt": len(measured) * config.params["window"],
                                                      "generated": len(measured) * (api != "sglang-generate")}}
    if target.record is not None and not errors:
        meta = {**target.recorded_meta, "protocol": protocol_of(config, dataset_sha256=dataset_sha256,
                                                                token_sha256=token_sha256), "api": api}
        ordered = [measured[sequence_id(i)] for i in range(len(windows))]
        details["recorded"] = {"path": target.record.name, "sha256": save_reference(target.record,
                                                                                   stack(windows, ordered, meta))}
    result = _result(config, protocol, target.reference, measured, errors, wall, details)
    allowed = math.floor(config.max_error_rate * len(windows) + 1e-9)
    if len(errors) > allowed:
        raise EvalInfraError("request_errors", f"{NAME}: {len(errors)} of {len(windows)} requests failed "
                             f"(allowed {allowed}); first: {errors[0]}", {NAME: result})
    return result


def _result(config: EvalConfig, protocol: dict[str, Any], reference: TopKSet | None,
            measured: dict[str, PositionTopK], errors: list[str], wall: float,
            details: dict[str, Any]) -> EvalResult:
    from harness.results import EvalResult, Metric

    timings = {"wall_s": round(wall, 3), "sequences_per_s": round(len(measured) / wall, 2) if wall else 0.0,
               "prompt_tokens_per_s": round(details["tokens"]["prompt"] / wall, 1) if wall else 0.0}
    if reference is None:
        details["note"] = "no stored reference to compare with: these distributions are only recorded"
    if reference is None or not measured:
        return EvalResult(NAME, protocol, {}, request_errors=len(errors), timings=timings, details=details)
    per_sequence = compare_sets(reference, measured)
    summary = summarize(per_sequence)
    n = len(per_sequence)
    metrics = {name: Metric(round(value, 8), n, None if se is None or math.isnan(se) else round(se, 8))
               for name, (value, se, _) in summary.items()}
    details["ci95"] = {name: [round(low, 8), round(high, 8)] for name, (_, _, (low, high)) in summary.items()}
    item_values = {name: {sid: round(values[name], 10) for sid, values in per_sequence.items()} for name in GATED}
    return EvalResult(NAME, protocol, metrics, request_errors=len(errors), timings=timings, details=details,
                      item_values=item_values)


# --- before launch and after the run: the reference's life cycle ----------------------------------------

def promote_references(run_dir: Path, cells: list[CellResult], references: Path, *, force: bool,
                       dry_run: bool) -> tuple[list[str], list[str]]:
    """Store the references a run's reference cells recorded: (what was (or would be) stored, what was
    refused). A stored reference is replaced only with `force`: every candidate baseline measured against
    it would stop comparing (its protocol names the reference's SHA-256)."""
    import shutil

    from harness.results import cell_dir_name

    stored, refused = [], []
    for result in cells:
        evaluation = result.evals.get(NAME)
        source = run_dir / "cells" / cell_dir_name(result.cell_id) / RECORD_FILE
        if evaluation is None or "recorded" not in evaluation.details or not source.exists():
            continue
        recorded = load_reference(source)
        config = EvalConfig(NAME, PROTOCOL, 0, 0, 1, 0.0, 1, params={"reference": evaluation.protocol["reference"]})
        target = stored_reference_path(config, references)
        before = load_reference(target).meta["sha256"] if target.exists() else None
        if before == recorded.meta["sha256"]:
            continue
        if before is not None and not force:
            refused.append(f"{result.cell_id}: numerics reference {target} differs ({before[:12]} -> "
                           f"{recorded.meta['sha256'][:12]}); replacing it makes every numerics baseline measured "
                           f"against it NOT_COMPARABLE until measured again (use --force)")
            continue
        if not dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(source, partial)
            partial.replace(target)
        stored.append(f"{result.cell_id} numerics reference: {before[:12] if before else 'none'} -> "
                      f"{recorded.meta['sha256'][:12]} ({target})")
    return stored, refused


def check_stored(baselines_dir: Path) -> list[tuple[str, str | None]]:
    """`harness validate`: every stored reference read back (kind, version and digest checked), as
    (its line, its problem or None)."""
    from harness.errors import ConfigError

    checked: list[tuple[str, str | None]] = []
    for path in sorted((baselines_dir / "references").glob("*/*.numerics.npz")):
        try:
            require_numpy()
            reference = load_reference(path)
        except ConfigError as problem:
            checked.append((str(path), str(problem)))
            continue
        windows, window = reference.token_ids.shape
        checked.append((f"{path}: numerics reference, {windows} windows of {window} tokens, "
                        f"sha256 {reference.meta['sha256'][:12]}", None))
    return checked


def _run(config: EvalConfig, base_url: str, model: str, context: EvalContext) -> EvalResult:
    if context.cell is None or context.cell_dir is None:
        raise ValueError("the numerics eval runs inside a suite's cell: it needs the cell's reference")
    target = target_for(context.cell, config, context.cell_dir, context.references)
    return run(config, base_url, model=model, target=target, data_root=context.data_root, stream=context.stream)


EVAL = Eval(name=NAME, protocols=PROTOCOLS, default_protocol=PROTOCOL, metrics=METRICS, parse=parse_config,
            protocol_of=protocol_of, protocol_keys=PROTOCOL_KEYS, run=_run, describe=describe,
            check_engine=check_engine, unmeasurable=unmeasurable, promote=promote_references,
            check_stored=check_stored)
