"""Shards across runners: a suite's cells split into n parts of about equal cost.

Cost is GPU-seconds: a cell's past wall time times its GPU count, since each shard's host packs its
cells onto the same number of GPUs. Past wall times come from a directory of earlier runs named with
--durations-from, never implicitly from the local reports/: every runner must split alike, and a
runner's own fresh results (shard 1 finished here before shard 2 started) would change the split
under it. A cell never run before costs the median of the known ones, or DEFAULT_CELL_S. The split is longest-processing-time first
(each cell, costliest first, to the cheapest shard so far), deterministic for a given input.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.matrix import Cell

DEFAULT_CELL_S = 900.0  # a cold SGLang start plus GSM8K on a large MoE model: minutes, not seconds


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int
    cells: tuple[Cell, ...]
    estimated_gpu_s: float

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not found or not 1 <= int(found.group(1)) <= int(found.group(2)):
        raise ConfigError(f"--shard {text!r}: expected k/n with 1 <= k <= n, e.g. 2/4")
    return int(found.group(1)), int(found.group(2))


def cell_cost(cell: Cell, known_s: dict[str, float], default_s: float) -> float:
    return known_s.get(cell.id, default_s) * max(cell.gpus, 1)


def split(cells: list[Cell], count: int, known_s: dict[str, float]) -> list[Shard]:
    """The cells in `count` shards of about equal GPU-seconds; within a shard, the suite's order."""
    if count < 1:
        raise ConfigError(f"--shards {count}: expected at least 1")
    seen = [known_s[c.id] for c in cells if c.id in known_s]
    default_s = statistics.median(seen) if seen else DEFAULT_CELL_S
    order = {cell.id: index for index, cell in enumerate(cells)}
    loads = [0.0] * count
    members: list[list[Cell]] = [[] for _ in range(count)]
    for cell in sorted(cells, key=lambda c: (-cell_cost(c, known_s, default_s), c.id)):
        target = min(range(count), key=lambda i: (loads[i], i))
        loads[target] += cell_cost(cell, known_s, default_s)
        members[target].append(cell)
    return [Shard(i + 1, count, tuple(sorted(members[i], key=lambda c: order[c.id])), round(loads[i], 1))
            for i in range(count)]
