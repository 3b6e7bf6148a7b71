"""Whether two runs of a suite reached the same verdicts: the same state for every (cell, metric). CI runs the
local suite on one host (`make local`) and across the one-node Slurm cluster (`--executor slurm`, two shards)
and checks them with this.

    python tools/slurm/same_verdicts.py reports/<one-host run> reports/<slurm run>

Exit 0 when they agree, 1 when they differ (each difference printed), 2 when a run cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.errors import ConfigError
from harness.history import open_run


def verdict_states(run_dir: Path) -> dict[tuple[str, str], str]:
    return {(v["cell_id"], v["metric"]): v["state"] for v in open_run(run_dir).verdicts}


def differences(first: dict[tuple[str, str], str], second: dict[tuple[str, str], str]) -> list[str]:
    return [f"{cell} {metric}: {first.get((cell, metric), 'absent')} vs {second.get((cell, metric), 'absent')}"
            for cell, metric in sorted(set(first) | set(second)) if first.get((cell, metric)) != second.get((cell, metric))]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        first, second = (verdict_states(Path(path)) for path in argv)
    except ConfigError as error:
        print(f"same_verdicts: {error}", file=sys.stderr)
        return 2
    found = differences(first, second)
    for line in found:
        print(f"differs: {line}")
    print(f"{len(first)} verdicts in {argv[0]}, {len(second)} in {argv[1]}: "
          + ("the same" if not found else f"{len(found)} differ"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
