"""Synthetic arithmetic word problems in GSM8K's format ("Question" / "Answer ... #### N").

Deterministic from a seed, so the held-out set is generated at run time, never committed, and the
same seed always gives the same rows (and the same dataset hash in results). GSM8K scoring applies
unchanged: the answer ends with "#### <number>".
"""

from __future__ import annotations

import hashlib
import json
import random

NAMES = ("Tom", "Ana", "Lee", "Mia", "Sam", "Zoe", "Max", "Ivy")
ITEMS = ("apples", "books", "coins", "pens", "cards", "shells", "stamps", "marbles")
GAIN = ("buys {b} more", "finds {b} more", "gets {b} more")
LOSS = ("gives away {b}", "loses {b}", "sells {b}")

# Train and held-out rows come from different seed streams, and held-out rows that happen to equal a
# training question are skipped, so the held-out accuracy is measured on unseen problems.
TRAIN_SEED = 1
HELD_OUT_SEED = 2
TRAIN_ROWS = 40000
DATASET_NAME = "synthetic-arith-v1"


def problem(rng: random.Random) -> dict[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if rng.random() < 0.5:
        a, b = rng.randint(1, 49), rng.randint(1, 49)
        verb, result, sign = rng.choice(GAIN).format(b=b), a + b, "+"
    else:
        a = rng.randint(2, 99)
        b = rng.randint(1, a - 1)
        verb, result, sign = rng.choice(LOSS).format(b=b), a - b, "-"
    question = f"{name} has {a} {item}. {name} {verb}. How many {item} does {name} have now?"
    answer = f"{a} {sign} {b} = {result}.\n#### {result}"
    return {"question": question, "answer": answer}


def rows(seed: int, count: int, *, exclude: set[str] | None = None) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    while len(out) < count:
        row = problem(rng)
        if exclude is None or row["question"] not in exclude:
            out.append(row)
    return out


def train_rows(count: int = TRAIN_ROWS) -> list[dict[str, str]]:
    return rows(TRAIN_SEED, count)


def held_out_rows(count: int) -> list[dict[str, str]]:
    return rows(HELD_OUT_SEED, count, exclude={row["question"] for row in train_rows()})


def digest(table: list[dict[str, str]]) -> str:
    """The SHA-256 of the rows as JSON lines: the dataset hash results record."""
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in table)
    return hashlib.sha256(text.encode()).hexdigest()
