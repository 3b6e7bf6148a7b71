"""GPQA Diamond with the simple-evals protocol (openai/simple-evals gpqa_eval.py, as SGLang's run_eval uses it).

Question and answer text live only in memory: results, reports and logs get record ids,
hashes, extracted letters and correctness.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

QUERY_TEMPLATE = """
Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.

{Question}

A) {A}
B) {B}
C) {C}
D) {D}
""".strip()

ANSWER_PATTERN = re.compile(r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?")
COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


@dataclass(frozen=True)
class Item:
    id: str  # "<Record ID>#r<repeat>"
    prompt: str
    answer: str  # the correct letter


def read_rows(path: Path, *, zip_password: str | None = None) -> tuple[list[dict[str, str]], str]:
    """Rows of a GPQA CSV (or the authors' zip), and the SHA-256 of the bytes read."""
    data = path.read_bytes()
    if path.suffix == ".zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next((n for n in archive.namelist() if n.endswith("gpqa_diamond.csv")), None)
            if name is None:
                raise ValueError(f"{path}: no gpqa_diamond.csv inside")
            data = archive.read(name, pwd=zip_password.encode() if zip_password else None)
    digest = hashlib.sha256(data).hexdigest()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: not a GPQA CSV (missing columns: {', '.join(missing) or 'all rows'})")
    return rows, digest


def record_id(row: dict[str, str], index: int) -> str:
    """The dataset's Record ID, or a hash of the question when a copy has none (never the text)."""
    rid = (row.get("Record ID") or "").strip()
    return rid or "q" + hashlib.sha256(row["Question"].encode()).hexdigest()[:12] + f"-{index}"


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


def extract(text: str) -> str | None:
    found = ANSWER_PATTERN.search(text)
    return found.group(1) if found else None  # as simple-evals: a lower-case letter does not match
