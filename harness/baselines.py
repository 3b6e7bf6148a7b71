"""Baselines: the stored figures each cell is gated against (baselines/<suite>.yaml).

Per cell and metric: the value, n, the protocol, provenance, optional hard floor / ceiling,
and optionally per-question outcomes kept compactly beside the file (baselines/outcomes/...).
Baselines change only through `harness baseline update`, which shows the diff first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import schema, strict
from harness.kernels.selection import KERNELS, NATIVE, kernels_of
from harness.metrics import METRICS, MetricKind, samples
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

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key in ("value", "n", "floor", "ceiling"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.protocol is not None:
            body["protocol"] = dict(self.protocol)
        if self.outcomes_file is not None:
            body["outcomes"] = self.outcomes_file
        body["provenance"] = self.provenance.to_dict()
        return body


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
            metric: _parse_entry(metric, body, cell_where.key(metric), path.parent)
            for metric, body in metrics_doc.items()
        }
    return Baselines(suite, path, cells)


def _parse_entry(metric: str, value: Any, where: Where, baselines_dir: Path) -> BaselineEntry:
    doc = strict.mapping(value, where, allowed=("value", "n", "floor", "ceiling", "protocol", "outcomes",
                                                "provenance"), required=("provenance",))
    kind = METRICS[metric].kind
    if kind is MetricKind.DIVERGENCE:
        return _parse_divergence_entry(metric, doc, where, baselines_dir)
    bounds = (0.0, 1.0) if kind is MetricKind.ACCURACY else (0.0, None)

    def optional_number(key: str) -> float | None:
        return None if doc.get(key) is None else strict.number(doc[key], where.key(key), minimum=bounds[0],
                                                                 maximum=bounds[1])

    entry_value = optional_number("value")
    floor = optional_number("floor")
    ceiling = optional_number("ceiling")
    if kind is MetricKind.MEMORY_GIB and floor is not None:
        raise where.key("floor").error("memory metrics take a ceiling, not a floor")
    if kind is not MetricKind.MEMORY_GIB and ceiling is not None:
        raise where.key("ceiling").error(f"{kind.value} metrics take a floor, not a ceiling")
    if entry_value is None and floor is None and ceiling is None:
        raise where.error("an entry needs a value, a floor or a ceiling")
    n = _count(doc, where)
    protocol = None
    if kind is MetricKind.ACCURACY:
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
        "cells": {cell: {m: e.to_dict() for m, e in metrics.items()} for cell, metrics in baselines.cells.items()},
    }


def save_baselines(baselines: Baselines) -> None:
    root = baselines.path.parent
    for metrics in baselines.cells.values():
        for entry in metrics.values():
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

    A cell that regressed or failed is refused unless `force`; floors and ceilings are kept.
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
        for metric, entry in entries_from_result(baselines.suite, result, run, today).items():
            old = cells.get(result.cell_id, {}).get(metric)
            if old is not None:
                entry = replace(entry, floor=old.floor, ceiling=old.ceiling)
            cells.setdefault(result.cell_id, {})[metric] = entry
            changes.append(Change(result.cell_id, metric, old, entry))
    return Baselines(baselines.suite, baselines.path, cells), changes, refused


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
                                        outcomes=sample.outcomes, values=sample.values)
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
