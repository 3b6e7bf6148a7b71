"""Memory figures under CPU load: the local suites run with the CPUs idle and with other processes loading
them, each memory figure's spread reported, and whether any came out REGRESSED (issue 25 §4).

Each round runs `harness run --suite S` (the real servers: `transformers serve` for `local`, vLLM CPU for
`local-numerics`) gated against the committed baselines, once with nothing added and once beside `--burners`
processes that spin on the CPUs (busy loops, each also touching `--burner-mib` of memory), interleaved. The
table gives per cell and figure the values and their spread (max - min) per condition; the last line says
whether any memory verdict was REGRESSED. Reports go to a temporary directory.

    .venv/bin/python benchmarks/bench_memory_load.py [--suite local-numerics] [--cell 'tiny-qwen3-moe/*']
        [--rounds 2] [--burners 8] [--burner-mib 256] [--python .venv-vllm/bin/python]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def burn(stop_at: float, mib: int) -> None:
    """One CPU kept busy until `stop_at`, with `mib` of memory touched (load, not a leak of the measured tree)."""
    ballast = bytearray(mib << 20)
    for offset in range(0, len(ballast), 4096):
        ballast[offset] = 1
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


class TreeWatch(threading.Thread):
    """Every 0.1 s (five times harness's own sampler), the RSS of every process under harness (the servers and
    theirs): the finest peak, and the most processes seen at once (a transient child shows up here); and the
    range of the machine's 1-minute load average (other jobs make "idle" less than idle)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_gib, self.most = pid, 0.0, 0
        self.load = (psutil.getloadavg()[0],) * 2
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                tree = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                return
            total = 0
            for process in tree:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_gib = max(self.peak_gib, total / 2**30)
            self.most = max(self.most, len(tree))
            now = psutil.getloadavg()[0]
            self.load = (min(self.load[0], now), max(self.load[1], now))


def run_suite(args: argparse.Namespace, reports: Path, run_id: str, burners: int) -> dict:
    command = [sys.executable, "-m", "harness", "run", "--suite", args.suite, "--run-id", run_id,
               "--reports-dir", str(reports), "--suites-dir", str(args.suites_dir)]
    for cell in args.cell:
        command += ["--cell", cell]
    if args.python:
        command += ["--python", args.python]
    workers = [multiprocessing.Process(target=burn, args=(time.time() + 3600, args.burner_mib), daemon=True)
               for _ in range(burners)]
    for worker in workers:
        worker.start()
    try:
        started = time.monotonic()
        harness = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watch = TreeWatch(harness.pid)
        watch.start()
        returncode = harness.wait()
        watch.stop.set()
        watch.join()
        elapsed = time.monotonic() - started
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()
    results = json.loads((reports / run_id / "results.json").read_text())
    return {"exit": returncode, "elapsed_s": round(elapsed, 1), "results": results,
            "fine_peak_gib": round(watch.peak_gib, 3), "most_processes": watch.most,
            "load": f"{watch.load[0]:.1f}-{watch.load[1]:.1f}"}


def memory_figures(run: dict) -> dict[tuple[str, str], float]:
    return {(cell["cell_id"], metric): value for cell in run["results"]["cells"]
            for metric, value in (cell.get("memory") or {}).items()}


def memory_regressions(run: dict) -> list[str]:
    return [f"{v['cell_id']} {v['metric']}: {v['reason']}" for v in run["results"].get("verdicts", [])
            if v["metric"].startswith("memory.") and v["state"] == "REGRESSED"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="local-numerics")
    parser.add_argument("--cell", action="append", default=[], help="glob on cell ids (repeatable)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--burners", type=int, default=8, help="busy processes during the loaded runs")
    parser.add_argument("--burner-mib", type=int, default=256)
    parser.add_argument("--python", help="the engine's interpreter (local-numerics: .venv-vllm/bin/python)")
    parser.add_argument("--suites-dir", type=Path, default=ROOT / "suites")
    args = parser.parse_args()
    conditions = {"idle": 0, "loaded": args.burners}
    values: dict[str, dict[tuple[str, str], list[float]]] = {name: {} for name in conditions}
    regressions: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-load-") as scratch:
        for round_index in range(args.rounds):
            for name, burners in conditions.items():
                run = run_suite(args, Path(scratch), f"{name}-{round_index}", burners)
                print(f"round {round_index + 1} {name}: exit {run['exit']} in {run['elapsed_s']} s; every 0.1 s: "
                      f"peak {run['fine_peak_gib']} GiB under harness (its own sampler's figure in the table), at "
                      f"most {run['most_processes']} processes; load average {run['load']}", file=sys.stderr)
                for key, value in memory_figures(run).items():
                    values[name].setdefault(key, []).append(value)
                regressions += [f"{name} round {round_index + 1}: {line}" for line in memory_regressions(run)]
    print(f"| cell | figure | {' | '.join(f'{n} (GiB)' for n in conditions)} | "
          f"{' | '.join(f'{n} spread' for n in conditions)} |")
    print("|---|---|" + "---|" * (2 * len(conditions)))
    for key in sorted({k for per in values.values() for k in per}):
        series = [values[name].get(key, []) for name in conditions]
        spreads = [f"{max(s) - min(s):.3f}" if s else "-" for s in series]
        print(f"| {key[0]} | {key[1]} | " + " | ".join(", ".join(f"{v:.3f}" for v in s) for s in series)
              + " | " + " | ".join(spreads) + " |")
    print(f"\nmemory REGRESSED: {len(regressions)}" + "".join(f"\n  {line}" for line in regressions))


if __name__ == "__main__":
    main()
