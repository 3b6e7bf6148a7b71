"""docs/rig.md's two rig tables, rendered from one run's record (benchmarks/rig-runs/<run>/): the figures of
suite gpu-sglang per cell, and the fix table (what preflight predicted for each checkpoint of gpu-sglang-fixes
beside what real SGLang did with it). Pure functions over the record's files; `python -m harness.report.rig DIR`.

A record holds what benchmarks/gpu_sglang_run.sh brought back: main.results.json, fixes.results.json and
preflight.txt (`harness preflight` of both suites on the GPU machine, the release it probed), or the `tp` and
`tpfixes` stages' tp.results.json and tpfixes.results.json (suite gpu-sglang-tp, on a host of several GPUs).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.engines.failures import LOAD_REGRESSION_CAUSES, classify, is_out_of_memory
from harness.report.markdown import code

_CELL_LINE = re.compile(r"^(?P<cell>\S+/\S+/\S+/tp\d+)\s+\((?P<path>[^)]*)\)\s+\[(?P<loader>[^\]]*)\]$")
# `  FAIL            quark-fp8-shared-experts (deepseek_v2.py (0.5.17)): reason`
_RULE_LINE = re.compile(r"^  (?P<outcome>[A-Z_]+)\s+(?P<fix>\S+) \((?P<source>.*?)\): (?P<reason>.*)$")


@dataclass(frozen=True)
class Prediction:
    cell: str
    loader: str  # "SGLang 0.5.17 loader"
    failures: tuple[str, ...]  # "fix: reason" of every FAIL

    @property
    def verdict(self) -> str:
        return "FAIL" if self.failures else "PASS"


@dataclass(frozen=True)
class FixRow:
    cell: str
    checkpoint: str  # the `local:` variant id
    prediction: Prediction
    loaded: bool
    recorded_cause: str | None  # what the run's classifier said
    cause: str | None  # what today's classifier reads in the same log tail
    message: str | None  # the line that names it

    @property
    def comparable(self) -> bool:
        """Whether the run tells anything about the prediction: a server that ran out of device memory never
        showed whether the checkpoint loads (issue 25: `Loaded weights leave no GPU memory for the KV cache`
        on a smaller GPU than the stage was sized for)."""
        return self.loaded or not is_out_of_memory(self.cause)

    @property
    def agrees(self) -> bool:
        """A load matches a PASS; a load failure of the loading stack matches a FAIL. Anything else (a failure
        of another kind, or none of either) is a disagreement: preflight claims nothing about it. A row that
        is not `comparable` does not agree either, and is counted apart."""
        if self.loaded:
            return self.prediction.verdict == "PASS"
        return self.cause in LOAD_REGRESSION_CAUSES and self.prediction.verdict == "FAIL"

    @property
    def agreement(self) -> str:
        if not self.comparable:
            return f"not comparable ({self.cause}: the load was never decided)"
        return "yes" if self.agrees else "NO"


def parse_preflight(text: str) -> dict[str, Prediction]:
    """`harness preflight` output (text) per cell: its loader and FAIL lines."""
    predictions: dict[str, Prediction] = {}
    failures: list[str] = []
    cell, loader = None, ""
    for line in text.splitlines():
        header = _CELL_LINE.match(line)
        if header:
            if cell:
                predictions[cell] = Prediction(cell, loader, tuple(failures))
            cell, loader, failures = header["cell"], header["loader"], []
            continue
        rule = _RULE_LINE.match(line)
        if rule and cell and rule["outcome"] == "FAIL":
            failures.append(f"{rule['fix']}: {rule['reason']}")
    if cell:
        predictions[cell] = Prediction(cell, loader, tuple(failures))
    return predictions


def _checkpoint_of(cell: dict[str, Any]) -> str:
    """The `local:` variant the row is about: the draft's where the cell has one (the EAGLE3 stage), else the
    checkpoint's."""
    draft = cell["cell"].get("draft") or {}
    return "/".join(Path(draft.get("path") or cell["cell"]["model_path"]).parts[-2:])


def fix_rows(fixes: dict[str, Any], predictions: dict[str, Prediction]) -> list[FixRow]:
    rows = []
    for cell in fixes["cells"]:
        error = cell.get("error") or {}
        cause, message = error.get("cause"), error.get("message")
        if error:  # the classifier may have learned a signature since: read the recorded tail again
            failure = classify([message or "", *(error.get("log_tail") or "").splitlines()], exited=True)
            if failure is not None and failure.cause != cause:
                cause, message = failure.cause, failure.message
        rows.append(FixRow(cell=cell["cell_id"], checkpoint=_checkpoint_of(cell),
                           prediction=predictions[cell["cell_id"]], loaded=cell["status"] == "ok",
                           recorded_cause=error.get("cause"), cause=cause, message=message))
    return rows


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _numerics(cell: dict[str, Any]) -> str:
    metrics = (cell.get("evals") or {}).get("numerics", {}).get("metrics", {})
    if "kld" not in metrics:
        return "-"
    top1 = metrics.get("top1_disagreement", {}).get("value")
    return f"{metrics['kld']['value']:.4g}" + ("" if top1 is None else f" / {top1:.4g}")


def _verdicts(run: dict[str, Any], cell_id: str) -> str:
    """The gate's verdicts of a cell that are not plain passes (`caught` for a canary's expected regression)."""
    shown = []
    for verdict in run.get("verdicts") or []:
        if verdict["cell_id"] != cell_id or verdict["state"] in ("PASS", "NO_BASELINE"):
            continue
        state = "caught" if verdict.get("expected") else verdict["state"]
        shown.append(f"{verdict['metric']} {state}" + (f" (p={verdict['p_value']:.2g})" if verdict.get("p_value")
                                                       else ""))
    return "; ".join(shown) or "pass"


def figures_table(main: dict[str, Any]) -> str:
    """Per cell: accuracy, the numerics eval where the suite has one, accept length, memory, timings and the
    gate's verdict."""
    numerics = any("numerics" in (cell.get("evals") or {}) for cell in main["cells"])
    lines = [f"| cell (suite {main['suite']}) | status | accuracy (questions) |"
             + (" numerics: KLD / top-1 disagreement vs BF16 |" if numerics else "")
             + " accept length (server avg / per-request probe) | memory: weights / KV cache (log), NVML device"
             " peak, GiB | launch to ready | eval | teardown | gate |",
             "|---|---|---|" + ("---|" if numerics else "") + "---|---|---|---|---|---|"]
    for cell in main["cells"]:
        accuracy = (cell.get("evals") or {}).get("gsm8k", {}).get("metrics", {}).get("accuracy")
        asked = accuracy["n"] if accuracy else 0
        score = f"{accuracy['value']:.3f} ({asked})" if accuracy and asked else "-"
        spec = cell.get("spec") or {}
        probe = (spec.get("per_request") or {}).get("mean_accept_length")
        accept = "-" if cell.get("accept_length") is None else (
            f"{cell['accept_length']:.2f} / " + ("-" if probe is None else f"{probe:.2f}"))
        memory = cell.get("memory") or {}
        timings = cell.get("timings") or {}
        error = cell.get("error") or {}
        status = "ok" if cell["status"] == "ok" else f"{cell['status']}: {error.get('cause')} ({code(error.get('message'))})"
        lines.append(f"| `{cell['cell_id']}` | {status} | {score} | " + (f"{_numerics(cell)} | " if numerics else "")
                     + f"{accept} | "
                     f"{_gib(memory.get('weights_gib'))} / {_gib(memory.get('kv_cache_gib'))} / "
                     f"{_gib(memory.get('device_peak_gib'))} | {_seconds(timings.get('launch_to_ready_s'))} | "
                     f"{_seconds(timings.get('eval_s'))} | {_seconds(timings.get('teardown_s'))} | "
                     f"{_cell(_verdicts(main, cell['cell_id']))} |")
    return "\n".join(lines)


def fix_table(rows: list[FixRow], describe: dict[str, str] | None = None) -> str:
    describe = describe or {}
    lines = ["| checkpoint (`local:` variant) | preflight predicted | SGLang 0.5.17 did | harness classified | agree |",
             "|---|---|---|---|---|"]
    for row in rows:
        what = f" ({describe[row.checkpoint]})" if row.checkpoint in describe else ""
        predicted = row.prediction.verdict + (": " + "; ".join(row.prediction.failures) if row.prediction.failures
                                              else "")
        did = "loaded" if row.loaded else code(row.message)
        classified = "ok" if row.loaded else (
            f"{row.cause} ({'REGRESSED' if row.cause in LOAD_REGRESSION_CAUSES else 'INFRA ERROR'})")
        if row.recorded_cause != row.cause:
            classified += f"; the run said {row.recorded_cause}"
        lines.append(f"| `{row.checkpoint}`{_cell(what)} | {_cell(predicted)} | {did} | {classified} | "
                     f"{row.agreement} |")
    comparable = [row for row in rows if row.comparable]
    agreed = sum(row.agrees for row in comparable)
    lines.append("")
    apart = len(rows) - len(comparable)
    lines.append(f"Agreement: {agreed} of {len(comparable)} checkpoints."
                 + (f" Not comparable: {apart} (out of memory before the load was decided)." if apart else ""))
    return "\n".join(lines)


def render(record: Path, describe: dict[str, str] | None = None) -> str:
    """The tables of the stages the record holds: figures for `main`, `tp` and the MXFP4 stages (`mxfp4-ref`,
    `mxfp4`, `mxfp4-defect`, `sglang-defect`), a fix table for `fixes`, `tpfixes` (the #23973 checkpoints at
    TP > 1) and `eagle3` (its rows are the drafts)."""
    def results(stage: str) -> dict[str, Any] | None:
        path = record / f"{stage}.results.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    figure_stages = ("main", "tp", "mxfp4-smoke", "mxfp4-ref", "mxfp4", "mxfp4-defect", "sglang-defect", "eagle3-trained",
                     "eagle3-trained-defect")
    tables = [figures_table(stage) for stage in map(results, figure_stages) if stage is not None]
    fix_stages = [stage for stage in map(results, ("fixes", "tpfixes", "eagle3")) if stage is not None]
    if fix_stages:
        predictions = parse_preflight((record / "preflight.txt").read_text(encoding="utf-8"))
        tables += [fix_table(fix_rows(stage, predictions), describe) for stage in fix_stages]
    return "\n\n".join(tables) + "\n"


if __name__ == "__main__":
    from harness.rig.checkpoints import VARIANTS

    print(render(Path(sys.argv[1]), {variant.id: variant.what for variant in VARIANTS}), end="")
