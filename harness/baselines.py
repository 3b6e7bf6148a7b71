"""Baselines: the stored figures each cell is gated against (baselines/<suite>.yaml).

Per cell and metric: the value, n, the protocol, provenance, optional hard floor / ceiling,
and optionally per-question outcomes kept compactly beside the file (baselines/outcomes/...).
Baselines change only through `harness baseline update`, which shows the diff first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import schema, strict
from harness.kernels.selection import KERNELS, NATIVE, kernels_of
from harness.metrics import METRICS, samples
from harness.protocols import PROTOCOL_KEYS
from harness.results import CellResult, RunResult, cell_dir_name
from harness.strict import Where

PROVENANCE_SOURCES = ("imported", "harness")


@dataclass(frozen=True)
class Provenance:
    source: str  # "imported" (a figure from a PR write-up) or "harness" (measured by this tool)
    date: str
    hardware: str | None = None
    engine_version: str | None = None
    pr: str | None = None
    run_id: str | None = None
    harness_version: str | None = None
    note: str | None = None
    # The kernels the figure was measured with (harness.kernels.selection); None: native (the imported figures,
    # measured on ROCm with the real aiter, record none).
    kernels: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class MeasuredOn:
    """Where and how a figure was measured, as far as deciding what it may be compared with needs
    (harness.compare's comparability rules): the GPU model and its memory, and the engine flags that size
    memory. A figure from a machine without GPUs has `gpu` None."""

    gpu: str | None = None  # "NVIDIA H200" (several models joined by "/")
    gpu_memory_gib: int | None = None  # per GPU, whole GiB (drivers report 79.6 or 79.65 for one card)
    sizing: tuple[tuple[str, str], ...] = ()  # (flag or environment variable, value), sorted
    recorded: bool = True  # False: read back from an old entry's provenance text, memory and sizing unknown
    # The kernels it was measured with (harness.kernels.selection). Not hardware: an entry's kernels are stored
    # in its provenance and read back from there, so they neither tell per-hardware entries apart nor enter
    # the stored `measured_on`.
    kernels: str = field(default=NATIVE, compare=False)

    def describe(self) -> str:
        if self.gpu is None:
            where = "no GPU"
        else:
            where = self.gpu + (f" {self.gpu_memory_gib} GiB" if self.gpu_memory_gib is not None else
                                " (memory size not recorded)")
        flags = " ".join(f"{flag} {value}" for flag, value in self.sizing)
        return where + (f", {flags}" if flags else "")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"gpu": self.gpu}
        if self.gpu_memory_gib is not None:
            body["gpu_memory_gib"] = self.gpu_memory_gib
        if self.sizing:
            body["sizing"] = dict(self.sizing)
        return body


def measured_on(result: CellResult, machine: dict[str, Any] | None = None) -> MeasuredOn:
    """The hardware a cell result was measured on (the GPUs it held) and the sizing flags it ran with."""
    from harness.engine_flags import sizing_flags

    machine = result.machine or machine or {}
    gpus = machine.get("gpus") or []
    held = machine.get("devices")
    if held is not None:
        gpus = [gpu for gpu in gpus if gpu.get("index") in held]
    if result.cell.get("hardware", {}).get("vendor") == "cpu":
        gpus = []
    names = sorted({str(gpu.get("name", "?")) for gpu in gpus})
    sizes = [gpu["memory_total_gib"] for gpu in gpus if isinstance(gpu.get("memory_total_gib"), (int, float))]
    sizing = sizing_flags(str(result.cell.get("engine", "")), result.cell.get("server_args") or [],
                          result.cell.get("env") or {})
    return MeasuredOn(gpu="/".join(names) or None, gpu_memory_gib=round(min(sizes)) if sizes else None,
                      sizing=sizing, kernels=kernels_of(result.cell.get("kernels")))


def _legacy_measured_on(provenance: Provenance) -> MeasuredOn:
    """An entry promoted before `measured_on` was recorded: provenance's `hardware` text ("1x NVIDIA H200", or
    the CPU's model on a machine without GPUs) gives the GPU model at most."""
    found = re.fullmatch(r"\d+x (.+)", provenance.hardware or "")
    return MeasuredOn(gpu=found[1] if found else None, recorded=False)


@dataclass(frozen=True)
class BaselineEntry:
    metric: str
    provenance: Provenance
    value: float | None = None
    n: int | None = None
    floor: float | None = None  # accuracy / accept length: below this is a regression, whatever the test says
    ceiling: float | None = None  # memory: above this is a regression
    protocol: dict[str, Any] | None = None
    outcomes_file: str | None = None  # relative to the baselines directory
    outcomes: dict[str, bool] | None = field(default=None, compare=False)
    values: dict[str, float] | None = field(default=None, compare=False)  # divergence: per-item values
    measured: MeasuredOn | None = None  # None: an entry from before it was recorded (see `where_measured`)
    # A metric measured on several kinds of hardware keeps one entry per kind (a list in the file): this entry is
    # the first, `per_hardware` all of them, in file order.
    per_hardware: tuple[BaselineEntry, ...] = field(default=(), compare=False)

    @property
    def where_measured(self) -> MeasuredOn:
        where = self.measured if self.measured is not None else _legacy_measured_on(self.provenance)
        return replace(where, kernels=kernels_of(self.provenance.kernels))

    @property
    def alternatives(self) -> tuple[BaselineEntry, ...]:
        """Every entry of the metric, one per hardware (just this one where the file holds one)."""
        return self.per_hardware or (self,)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key in ("value", "n", "floor", "ceiling"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.protocol is not None:
            body["protocol"] = dict(self.protocol)
        if self.outcomes_file is not None:
            body["outcomes"] = self.outcomes_file
        if self.measured is not None:
            body["measured_on"] = self.measured.to_dict()
        body["provenance"] = self.provenance.to_dict()
        return body

    def file_form(self) -> dict[str, Any] | list[dict[str, Any]]:
        """How the baseline file holds the metric: one mapping, or a list of one mapping per hardware."""
        if len(self.alternatives) > 1:
            return [entry.to_dict() for entry in self.alternatives]
        return self.to_dict()


@dataclass(frozen=True)
class Baselines:
    suite: str
    path: Path
    cells: dict[str, dict[str, BaselineEntry]]

    def entry(self, cell_id: str, metric: str) -> BaselineEntry | None:
        return self.cells.get(cell_id, {}).get(metric)


def baseline_path(baselines_dir: Path, suite: str) -> Path:
    return baselines_dir / f"{suite}.yaml"


def load_baselines(path: Path, *, must_exist: bool = False) -> Baselines:
    """Read and validate a baseline file; a missing file is an empty set unless `must_exist`."""
    suite = path.stem
    if not path.exists():
        if must_exist:
            raise strict.Where(str(path)).error("no such baseline file")
        return Baselines(suite, path, {})
    where = Where(str(path))
    document = schema.check_version(schema.read_document(path), path, "harness.baselines", migrate=False)
    doc = strict.mapping(document, where, allowed=("kind", "schema_version", "suite", "cells"),
                         required=("suite", "cells"))
    if doc["suite"] != suite:
        raise where.key("suite").error(f"'{doc['suite']}' must equal the file name '{suite}'")
    cells_where = where.key("cells")
    cells_doc = strict.mapping(doc["cells"] or {}, cells_where, allowed=list(doc["cells"] or {}))
    cells = {}
    for cell_id, metrics in cells_doc.items():
        cell_where = cells_where.key(cell_id)
        metrics_doc = strict.mapping(metrics, cell_where, allowed=METRICS)
        cells[cell_id] = {
            metric: _parse_metric(metric, body, cell_where.key(metric), path.parent)
            for metric, body in metrics_doc.items()
        }
    return Baselines(suite, path, cells)


def _parse_metric(metric: str, value: Any, where: Where, baselines_dir: Path) -> BaselineEntry:
    """One metric's entry, or (a list) its entries per hardware: each with its own `measured_on`, no two alike."""
    if not isinstance(value, list):
        return _parse_entry(metric, value, where, baselines_dir)
    if not value:
        raise where.error("an empty list: give one entry per hardware, or a single entry")
    entries = [_parse_entry(metric, item, where.key(str(index)), baselines_dir) for index, item in enumerate(value)]
    seen: dict[MeasuredOn, int] = {}
    for index, entry in enumerate(entries):
        if entry.measured is None:
            raise where.key(str(index)).error("an entry of a per-hardware list needs 'measured_on'")
        if entry.measured in seen:
            raise where.key(str(index)).error(f"measured on the same hardware as entry {seen[entry.measured]} "
                                              f"({entry.measured.describe()})")
        seen[entry.measured] = index
    return replace(entries[0], per_hardware=tuple(entries))


def _parse_measured_on(value: Any, where: Where) -> MeasuredOn:
    doc = strict.mapping(value, where, allowed=("gpu", "gpu_memory_gib", "sizing"), required=("gpu",))
    gpu = None if doc["gpu"] is None else strict.string(doc["gpu"], where.key("gpu"))
    memory = doc.get("gpu_memory_gib")
    memory = None if memory is None else strict.integer(memory, where.key("gpu_memory_gib"), minimum=1)
    sizing_doc = strict.mapping(doc.get("sizing") or {}, where.key("sizing"), allowed=list(doc.get("sizing") or {}))
    return MeasuredOn(gpu=gpu, gpu_memory_gib=memory, sizing=tuple(sorted((str(k), str(v))
                                                                            for k, v in sizing_doc.items())))


def _parse_entry(metric: str, value: Any, where: Where, baselines_dir: Path) -> BaselineEntry:
    entry = _parse_figures(metric, value, where, baselines_dir)
    if isinstance(value, dict) and value.get("measured_on") is not None:
        entry = replace(entry, measured=_parse_measured_on(value["measured_on"], where.key("measured_on")))
    return entry


def _parse_figures(metric: str, value: Any, where: Where, baselines_dir: Path) -> BaselineEntry:
    doc = strict.mapping(value, where, allowed=("value", "n", "floor", "ceiling", "protocol", "outcomes",
                                                "measured_on", "provenance"), required=("provenance",))
    kind = METRICS[metric].kind
    if kind.per_item:
        return _parse_divergence_entry(metric, doc, where, baselines_dir)
    bounds = kind.bounds

    def optional_number(key: str) -> float | None:
        return None if doc.get(key) is None else strict.number(doc[key], where.key(key), minimum=bounds[0],
                                                                 maximum=bounds[1])

    entry_value = optional_number("value")
    floor = optional_number("floor")
    ceiling = optional_number("ceiling")
    if not kind.higher_is_better and floor is not None:
        raise where.key("floor").error(f"{kind.name} metrics take a ceiling, not a floor")
    if kind.higher_is_better and ceiling is not None:
        raise where.key("ceiling").error(f"{kind.name} metrics take a floor, not a ceiling")
    if entry_value is None and floor is None and ceiling is None:
        raise where.error("an entry needs a value, a floor or a ceiling")
    n = _count(doc, where)
    protocol = None
    if kind.counted:
        if entry_value is not None and n is None:
            raise where.key("n").error("an accuracy value needs the number of questions it was measured on")
        protocol = _protocol(doc, where, "an accuracy")
    elif "protocol" in doc:
        raise where.key("protocol").error(f"only accuracy metrics have a protocol, not {metric}")
    outcomes_file = doc.get("outcomes")
    outcomes = None
    if outcomes_file is not None:
        outcomes_file = strict.string(outcomes_file, where.key("outcomes"))
        outcomes = load_outcomes(baselines_dir / outcomes_file, where.key("outcomes"))
        if n is not None and len(outcomes) != n:
            raise where.key("outcomes").error(f"{outcomes_file} holds {len(outcomes)} outcomes, but n is {n}")
        if entry_value is not None and abs(sum(outcomes.values()) / len(outcomes) - entry_value) > 0.5 / len(outcomes):
            raise where.key("outcomes").error(f"{outcomes_file} gives accuracy "
                                              f"{sum(outcomes.values()) / len(outcomes):.4f}, value says {entry_value}")
    return BaselineEntry(metric=metric, provenance=_parse_provenance(doc["provenance"], where.key("provenance")),
                         value=entry_value, n=n, floor=floor, ceiling=ceiling, protocol=protocol,
                         outcomes_file=outcomes_file, outcomes=outcomes)


def _parse_divergence_entry(metric: str, doc: dict[str, Any], where: Where, baselines_dir: Path) -> BaselineEntry:
    """A divergence figure (numerics): value with n and protocol, per-item values, an optional ceiling."""
    def optional_number(key: str) -> float | None:
        return None if doc.get(key) is None else strict.number(doc[key], where.key(key), minimum=0.0)

    entry_value, ceiling = optional_number("value"), optional_number("ceiling")
    if doc.get("floor") is not None:
        raise where.key("floor").error("divergence metrics take a ceiling, not a floor (lower is better)")
    if entry_value is None and ceiling is None:
        raise where.error("an entry needs a value or a ceiling")
    n = _count(doc, where)
    if entry_value is not None and n is None:
        raise where.key("n").error("a divergence value needs the number of items it was measured on")
    protocol = _protocol(doc, where, "a divergence")
    values_file = None if doc.get("outcomes") is None else strict.string(doc["outcomes"], where.key("outcomes"))
    values = None
    if values_file is not None:
        values = load_item_values(baselines_dir / values_file, where.key("outcomes"))
        if n is not None and len(values) != n:
            raise where.key("outcomes").error(f"{values_file} holds {len(values)} values, but n is {n}")
        mean = sum(values.values()) / len(values)
        if entry_value is not None and abs(mean - entry_value) > 1e-6 * max(1.0, abs(entry_value)):
            raise where.key("outcomes").error(f"{values_file} gives a mean of {mean:.6g}, value says {entry_value}")
    return BaselineEntry(metric=metric, provenance=_parse_provenance(doc["provenance"], where.key("provenance")),
                         value=entry_value, n=n, ceiling=ceiling, protocol=protocol, outcomes_file=values_file,
                         values=values)


def _count(doc: dict[str, Any], where: Where) -> int | None:
    return None if doc.get("n") is None else strict.integer(doc["n"], where.key("n"), minimum=1)


def _protocol(doc: dict[str, Any], where: Where, what: str) -> dict[str, Any]:
    """The protocol an accuracy or divergence figure was measured with: required, strict."""
    if "protocol" not in doc:
        raise where.error(f"missing required key 'protocol' ({what} means nothing without it)")
    return strict.mapping(doc["protocol"], where.key("protocol"), allowed=PROTOCOL_KEYS, required=("eval", "protocol"))


def _parse_provenance(value: Any, where: Where) -> Provenance:
    doc = strict.mapping(value, where, allowed=tuple(Provenance.__dataclass_fields__), required=("source", "date"))
    strict.choice(doc["source"], where.key("source"), what="provenance source", choices=PROVENANCE_SOURCES)
    if "kernels" in doc:
        strict.choice(doc["kernels"], where.key("kernels"), what="kernels", choices=KERNELS)
    return Provenance(**{k: str(v) for k, v in doc.items()})


# --- outcomes, stored compactly: the ids once and one character per question --------------------------

def outcomes_to_dict(outcomes: dict[str, bool]) -> dict[str, Any]:
    ids = list(outcomes)
    return {"kind": "harness.outcomes", "schema_version": schema.CURRENT_VERSIONS["harness.outcomes"],
            "ids": ids, "correct": "".join("1" if outcomes[i] else "0" for i in ids)}


def load_outcomes(path: Path, where: Where) -> dict[str, bool]:
    if not path.exists():
        raise where.error(f"outcomes file {path} does not exist")
    document = schema.check_version(schema.read_document(path), path, "harness.outcomes", migrate=True)
    ids, bits = document.get("ids"), document.get("correct")
    if not isinstance(ids, list) or not isinstance(bits, str) or len(ids) != len(bits) or set(bits) - {"0", "1"}:
        raise Where(str(path)).error("expected 'ids' (a list) and 'correct' (a 0/1 string of the same length)")
    return {str(qid): bit == "1" for qid, bit in zip(ids, bits)}


def item_values_to_dict(values: dict[str, float]) -> dict[str, Any]:
    ids = list(values)
    return {"kind": "harness.item_values", "schema_version": schema.CURRENT_VERSIONS["harness.item_values"],
            "ids": ids, "values": [values[i] for i in ids]}


def load_item_values(path: Path, where: Where) -> dict[str, float]:
    """Per-item values of a divergence baseline (one float per sequence id)."""
    if not path.exists():
        raise where.error(f"values file {path} does not exist")
    document = schema.check_version(schema.read_document(path), path, "harness.item_values", migrate=True)
    ids, values = document.get("ids"), document.get("values")
    if (not isinstance(ids, list) or not isinstance(values, list) or len(ids) != len(values)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise Where(str(path)).error("expected 'ids' and 'values' (numbers), lists of the same length")
    return {str(item): float(value) for item, value in zip(ids, values)}


def outcomes_relpath(suite: str, cell_id: str, metric: str) -> str:
    return f"outcomes/{suite}/{cell_dir_name(cell_id)}.{metric}.json"


# --- writing and updating ------------------------------------------------------------------------------

def baselines_to_dict(baselines: Baselines) -> dict[str, Any]:
    return {
        "kind": "harness.baselines",
        "schema_version": schema.CURRENT_VERSIONS["harness.baselines"],
        "suite": baselines.suite,
        "cells": {cell: {m: e.file_form() for m, e in metrics.items()} for cell, metrics in baselines.cells.items()},
    }


def save_baselines(baselines: Baselines) -> None:
    root = baselines.path.parent
    for metrics in baselines.cells.values():
        for entry in (alternative for each in metrics.values() for alternative in each.alternatives):
            if entry.outcomes is not None and entry.outcomes_file is not None:
                # One line: a baseline of 1319 questions stays a few KiB and one diff line.
                schema.write_atomic(root / entry.outcomes_file,
                                    json.dumps(outcomes_to_dict(entry.outcomes), separators=(",", ":")) + "\n")
            elif entry.values is not None and entry.outcomes_file is not None:
                schema.write_atomic(root / entry.outcomes_file,
                                    json.dumps(item_values_to_dict(entry.values), separators=(",", ":")) + "\n")
    schema.write_yaml(baselines.path, baselines_to_dict(baselines))


@dataclass(frozen=True)
class Change:
    cell_id: str
    metric: str
    old: BaselineEntry | None
    new: BaselineEntry

    def describe(self) -> str:
        old = "none" if self.old is None or self.old.value is None else _figure(self.old.value)
        n = f" (n={self.new.n})" if self.new.n else ""
        return f"{self.cell_id} {self.metric}: {old} -> {_figure(self.new.value)}{n}"


def _figure(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


PROMOTABLE_STATES = ("PASS", "IMPROVED", "NO_BASELINE", "NOT_COMPARABLE")


def plan_update(baselines: Baselines, run: RunResult, *, cell_patterns: list[str] | None = None,
                force: bool = False, today: str) -> tuple[Baselines, list[Change], list[str]]:
    """The baselines after promoting a run's measured figures, the changes, and what was refused.

    A cell that regressed or failed is refused unless `force`; floors and ceilings are kept. A figure of an eval
    the sequential gate stopped early is always refused, `force` or not: a baseline needs every question's
    outcome, and a prefix is a figure measured another way (the cell's other figures are promoted as usual).
    """
    import fnmatch

    verdict_states: dict[str, set[str]] = {}
    for verdict in run.verdicts:
        verdict_states.setdefault(verdict["cell_id"], set()).add(verdict["state"])
    cells = {cell_id: dict(metrics) for cell_id, metrics in baselines.cells.items()}
    changes: list[Change] = []
    refused: list[str] = []
    for result in run.cells:
        if cell_patterns and not any(fnmatch.fnmatchcase(result.cell_id, p) for p in cell_patterns):
            continue
        if result.cell.get("canary_of"):  # a planted defect: gated against another cell's figures, never a baseline
            refused.append(f"{result.cell_id}: a canary of {result.cell['canary_of']}: never promoted")
            continue
        bad = verdict_states.get(result.cell_id, set()) - set(PROMOTABLE_STATES)
        if result.status != "ok" or bad:
            reason = result.status if result.status != "ok" else ", ".join(sorted(bad))
            if not force:
                refused.append(f"{result.cell_id}: {reason} (use --force to promote it anyway)")
                continue
        stopped = stopped_early(result)
        for metric, entry in entries_from_result(baselines.suite, result, run, today).items():
            if metric in stopped:
                refused.append(f"{result.cell_id}: {metric}: {stopped[metric]}; a baseline needs every question's "
                               f"outcome: run it without --sequential (--force cannot make a prefix whole)")
                continue
            current = cells.get(result.cell_id, {}).get(metric)
            old, merged = _promoted(metric, current, entry)
            cells.setdefault(result.cell_id, {})[metric] = merged
            promoted = next(e for e in merged.alternatives if e.measured == entry.measured)
            changes.append(Change(result.cell_id, metric, old, promoted))
    return Baselines(baselines.suite, baselines.path, cells), changes, refused


def _promoted(metric: str, current: BaselineEntry | None, new: BaselineEntry) -> tuple[BaselineEntry | None,
                                                                                        BaselineEntry]:
    """(the entry the new figure replaces, the metric's entries after promotion). A figure that follows the
    hardware replaces only the entry of its own hardware (an old entry that recorded none, of the same GPU
    model, counts as its own) and is kept beside the others; any other figure replaces the metric's entry.
    Floors and ceilings are kept from the entry replaced."""
    if current is None:
        return None, new
    if not METRICS[metric].depends_on_hardware:
        return current, replace(new, floor=current.floor, ceiling=current.ceiling)
    mine = new.where_measured

    def same(entry: BaselineEntry) -> bool:
        theirs = entry.where_measured
        return theirs == mine or (not theirs.recorded and theirs.gpu == mine.gpu)

    old = next((entry for entry in current.alternatives if same(entry)), None)
    if old is not None:
        new = replace(new, floor=old.floor, ceiling=old.ceiling)
    entries = [new if entry is old else entry for entry in current.alternatives] if old is not None else [
        *current.alternatives, new]
    if len(entries) == 1:
        return old, new
    # In a list each entry names its hardware: an old one that recorded none keeps the GPU model it names.
    entries = [replace(entry, per_hardware=(), measured=entry.where_measured) for entry in entries]
    return old, replace(entries[0], per_hardware=tuple(entries))


def stopped_early(result: CellResult) -> dict[str, str]:
    """The metrics of a cell whose eval the sequential gate stopped before its last question, with a phrase."""
    found = {}
    for metric, sample in samples(result).items():
        record = sample.sequential or {}
        if record.get("stopped_early"):
            found[metric] = (f"its eval stopped early (sequential: decided after {record.get('asked')} of "
                             f"{record.get('budget')} questions)")
    return found


def entries_from_result(suite: str, result: CellResult, run: RunResult, today: str) -> dict[str, BaselineEntry]:
    """A cell result's measured figures as baseline entries (for promotion, and for `harness compare A B`)."""
    provenance = Provenance(
        source="harness", date=today, run_id=run.run_id, harness_version=run.harness_version,
        hardware=_hardware_summary(result.machine or run.machine),
        engine_version=_engine_summary(result.engine),
        kernels=None if kernels_of(result.cell.get("kernels")) == NATIVE else result.cell["kernels"],
    )
    entries = {}
    for metric, sample in samples(result).items():
        per_item = sample.outcomes or sample.values
        outcomes_file = outcomes_relpath(suite, result.cell_id, metric) if per_item else None
        entries[metric] = BaselineEntry(metric=metric, provenance=provenance, value=sample.value,
                                        n=len(per_item) if per_item else sample.n,
                                        protocol=sample.protocol, outcomes_file=outcomes_file,
                                        outcomes=sample.outcomes, values=sample.values,
                                        measured=measured_on(result, run.machine))
    return entries


def _hardware_summary(machine: dict[str, Any]) -> str | None:
    gpus = machine.get("gpus") or []
    if gpus:
        names = sorted({g.get("name", "?") for g in gpus})
        return f"{len(gpus)}x {'/'.join(names)}"
    return machine.get("cpu") or machine.get("platform")


def _engine_summary(engine: dict[str, Any]) -> str | None:
    if not engine:
        return None
    text = f"{engine.get('name', '?')} {engine.get('version', '?')}"
    return text + (f" ({engine['commit']})" if engine.get("commit") else "")
