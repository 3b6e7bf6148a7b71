r"""GPQA Diamond with the protocols of simple-evals and of SGLang's copy of it: its data, prompts, scorers,
metric, and the EVAL that registers it (harness.evals.registry).

- simple-evals: openai/simple-evals gpqa_eval.py (commit ee3b0318): the first match of
  `(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?` in the raw response.
- sglang-run-eval: SGLang's copy, python/sglang/test/simple_eval_gpqa.py (what `run_eval --eval-name gpqa`
  runs; 0.5.17): the first match of `(?i)Answer\s*:\s*([A-D])` in the raw response, one repeat.
- sgl-eval: sgl-eval's gpqa (NeMo-Skills' prompt and MCQ grader), run by sgl-eval itself
  (harness.evals.sgleval_backend).
Both CSV readers are pandas' `read_csv` with its defaults (a UTF-8 BOM read, "None", "NA", "N/A", "null",
empty ... read as NaN, which the prompt shows as "nan"), as the upstreams read it. `strip_reasoning: true`
(not the upstreams' behaviour; recorded in the protocol) removes `<think>...</think>` before extraction.

Question and answer text live only in memory: results, reports and logs get record ids,
hashes, extracted letters and correctness.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import strict
from harness.errors import ConfigError
from harness.evals import answers, data, sgleval_backend
from harness.evals.base import EvalConfig, EvalContext, Prepared, ProtocolDefaults
from harness.evals.runner import Dataset, Option, question_eval, question_protocol, sampling
from harness.metric_kinds import MetricDef, MetricKind
from harness.results import EvalResult

NAME = "gpqa"
PROTOCOLS = {
    # openai/simple-evals gpqa_eval.py (its default n_repeats is 4; harness's default 1, set `repeats`).
    "simple-evals": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="chat", max_tokens=2048),
    # sglang/test/simple_eval_gpqa.py as run_eval.py calls it: n_repeats 1, max_tokens 2048, temperature 0.
    "sglang-run-eval": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="chat", max_tokens=2048),
    # sgl-eval's gpqa, greedy with one repeat (harness.evals.sgleval_backend says why).
    "sgl-eval": ProtocolDefaults(shots=0, shots_source="none", prompt_mode="chat", max_tokens=2048),
}
METRICS = (MetricDef("gpqa.accuracy", MetricKind.ACCURACY, "GPQA Diamond accuracy (mean over repeats)",
                     min_effect=0.03),)
# GPQA Diamond is gated: its hash is taken from the file the run reads, never known in advance.
DATASET = Dataset("gpqa-diamond", None, 198)
GPQA_CSV_URL = "https://openaipublic.blob.core.windows.net/simple-evals/gpqa_diamond.csv"
GPQA_FILE = "gpqa_diamond.csv"

QUERY_TEMPLATE = """
Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.

{Question}

A) {A}
B) {B}
C) {C}
D) {D}
""".strip()

# Each protocol's answer pattern, as its upstream spells it (re.search: the first match wins).
ANSWER_PATTERNS = {
    "simple-evals": re.compile(r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?"),  # simple-evals common.py
    "sglang-run-eval": re.compile(r"(?i)Answer\s*:\s*([A-D])"),  # sglang/test/simple_eval_common.py
}
ANSWER_PATTERN = ANSWER_PATTERNS["simple-evals"]
COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
OPTIONS = {"strip_reasoning": Option(False, strict.boolean, ("simple-evals", "sglang-run-eval"))}


@dataclass(frozen=True)
class Item:
    id: str  # "<Record ID>#r<repeat>"
    prompt: str
    answer: str  # the correct letter


def read_rows(path: Path, *, zip_password: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Rows of a GPQA CSV (or the authors' zip) as the upstreams read them (pandas.read_csv, its defaults;
    each row `row.to_dict()`), and the SHA-256 of the bytes read."""
    data = path.read_bytes()
    if path.suffix == ".zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next((n for n in archive.namelist() if n.endswith("gpqa_diamond.csv")), None)
            if name is None:
                raise ValueError(f"{path}: no gpqa_diamond.csv inside")
            data = archive.read(name, pwd=zip_password.encode() if zip_password else None)
    digest = hashlib.sha256(data).hexdigest()
    try:
        import pandas
    except ImportError:
        raise ConfigError("GPQA's CSV is read with pandas, as simple-evals reads it: pip install 'pandas>=2'") from None
    try:
        frame = pandas.read_csv(io.BytesIO(data))
    except (ValueError, UnicodeDecodeError, pandas.errors.ParserError) as problem:
        raise ValueError(f"{path}: not a GPQA CSV ({type(problem).__name__}: {str(problem)[:120]})") from None
    rows = [row.to_dict() for _, row in frame.iterrows()]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if not rows or missing:
        raise ValueError(f"{path}: not a GPQA CSV (missing columns: {', '.join(missing) or 'all rows'})")
    return rows, digest


def record_id(row: dict[str, Any], index: int) -> str:
    """The dataset's Record ID, or a hash of the question when a copy has none (never the text)."""
    rid = row.get("Record ID")
    rid = rid.strip() if isinstance(rid, str) else ""
    return rid or "q" + hashlib.sha256(str(row["Question"]).encode()).hexdigest()[:12] + f"-{index}"


def build_items(rows: list[dict[str, str]], repeats: int, count: int | None = None) -> list[Item]:
    """simple-evals: one Random(0) draws the optional subset, then a permutation per (repeated) row."""
    rng = random.Random(0)
    indexed = list(enumerate(rows))
    if count is not None and count < len(rows):
        if repeats != 1:
            raise ValueError("simple-evals samples a subset only with repeats = 1")
        indexed = rng.sample(indexed, count)
    examples = [(i, row, r) for r in range(repeats) for i, row in indexed]
    items = []
    for index, row, repeat in examples:
        permutation = rng.sample(range(4), 4)
        choices = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"],
                   row["Incorrect Answer 3"]]
        choices = [choices[i] for i in permutation]
        letter = "ABCD"[choices.index(row["Correct Answer"])]
        prompt = QUERY_TEMPLATE.format(Question=row["Question"], A=choices[0], B=choices[1], C=choices[2],
                                       D=choices[3])
        items.append(Item(f"{record_id(row, index)}#r{repeat}", prompt, letter))
    return items


def extract(text: str, protocol: str = "simple-evals", *, strip_reasoning: bool = False) -> str | None:
    """The protocol's answer letter: its pattern's first match in the response (as the upstream: a lower-case
    letter does not match); with `strip_reasoning`, searched after `<think>...</think>` is removed."""
    if strip_reasoning:
        text = answers.strip_reasoning(text)
    found = ANSWER_PATTERNS[protocol].search(text)
    return found.group(1) if found else None


# --- data ------------------------------------------------------------------------------------------------

def gpqa_path(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise ConfigError(f"{path}: GPQA data file not found")
        return path
    path = data.data_dir() / "gpqa" / GPQA_FILE
    if not path.exists():
        raise ConfigError(f"{path}: GPQA Diamond is missing; run `harness data fetch gpqa` (needs internet; "
                          f"--hf-token for the gated hub copy), or give a local CSV or zip with `data:` / --data")
    return path


def check_data(config: EvalConfig) -> None:
    """The file `prepare` will read exists (before any server launches)."""
    gpqa_path(config.data)


def fetch(root: Path | None = None, *, hf_token: str | None = None, sha256: str | None = None) -> list[Path]:
    """Download GPQA Diamond (simple-evals' CSV, or the gated hub copy with a token), verified when a
    SHA-256 is given (`harness data fetch gpqa`)."""
    target = (root or data.data_dir()) / "gpqa" / GPQA_FILE
    if hf_token:
        from harness.secrets import hub_token

        hf_token, refused = hub_token(hf_token)  # only to the hub endpoint, over HTTPS
        if refused:
            raise ConfigError(f"--hf-token: {refused}")
        try:
            from huggingface_hub import hf_hub_download  # optional: only for the gated hub copy
        except ImportError:
            raise ConfigError("--hf-token needs huggingface_hub: pip install huggingface_hub") from None
        source = Path(hf_hub_download(repo_id="Idavidrein/gpqa", filename=GPQA_FILE, repo_type="dataset",
                                      token=hf_token))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    else:
        from harness.transport import download

        download(GPQA_CSV_URL, target, sha256=sha256)
    if sha256 and data.sha256_of(target) != sha256:
        target.unlink()
        raise ConfigError(f"{target}: SHA-256 does not match --sha256")
    return [target]


# --- requests ------------------------------------------------------------------------------------------

def prepare(config: EvalConfig, model: str, *, zip_password: str | None = None, **_: Any) -> Prepared:
    """One chat request per (repeated) item, and the scorer of the protocol's answer line."""
    from harness.transport import Request

    if config.protocol == "sgl-eval":
        raise ConfigError("gpqa sgl-eval: sgl-eval sends its own requests (harness eval gpqa --protocol sgl-eval)")
    rows, digest = load(config, zip_password)
    count = config.questions if config.questions < len(rows) else None
    items = build_items(rows, config.repeats, count)
    answers = {item.id: item.answer for item in items}
    requests = []
    for item in items:
        body = sampling(config, model)
        body["messages"] = [{"role": "user", "content": item.prompt}]
        if config.chat_template_kwargs:
            body["chat_template_kwargs"] = dict(config.chat_template_kwargs)
        requests.append(Request(item.id, "/v1/chat/completions", body))
    strip_reasoning = bool(config.params.get("strip_reasoning"))

    def scorer(qid: str, text: str) -> tuple[str | None, bool, dict[str, Any]]:
        letter = extract(text, config.protocol, strip_reasoning=strip_reasoning)
        return letter, letter == answers[qid], {}

    protocol = question_protocol(config, PROTOCOLS[config.protocol], DATASET, digest)
    return Prepared(iter(requests), len(requests), scorer, digest, protocol)


def load(config: EvalConfig, zip_password: str | None = None) -> tuple[list[dict[str, Any]], str]:
    import os

    return read_rows(gpqa_path(config.data),
                     zip_password=zip_password or os.environ.get("HARNESS_GPQA_ZIP_PASSWORD"))


def run_sgl_eval(config: EvalConfig, base_url: str, model: str, context: EvalContext) -> EvalResult:
    """The sgl-eval protocol: sgl-eval's own prompt, client and grader on the rows read here."""
    rows, digest = load(config)
    protocol = question_protocol(config, PROTOCOLS[config.protocol], DATASET, digest)
    # The choices are shuffled over every row in file order (the vendored prepare), then the first N asked.
    examples = sgleval_backend.gpqa_examples(rows, [record_id(row, i) for i, row in enumerate(rows)])
    examples = examples[:config.questions]
    return sgleval_backend.run(config, base_url, model, examples, protocol, stream=context.stream)


EVAL = question_eval(name=NAME, protocols=PROTOCOLS, default_protocol="simple-evals", dataset=DATASET,
                     metrics=METRICS, prepare=prepare, fetch=fetch, options=OPTIONS,
                     runs={"sgl-eval": run_sgl_eval}, protocol_keys=sgleval_backend.PROTOCOL_KEYS,
                     check_data=check_data)
