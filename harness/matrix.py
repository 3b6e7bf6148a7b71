"""Matrix expansion: a suite becomes cells with stable, readable ids.

A cell is one server configuration: model x quant x spec x tp (x ep). Its id, e.g.
`glm5/quark-mxfp4/mtp/tp8`, keys results, baselines and report rows alike.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass
from typing import Any

from harness.axes import DEFAULT_EAGLE_PARAMS, QUANT_KINDS, SPEC_KINDS
from harness.engine_specs import ENGINES
from harness.errors import ConfigError
from harness.evals.base import EvalConfig, Subject
from harness.evals.registry import EVALS
from harness.fixes import FIXES
from harness.kernels.selection import NATIVE
from harness.protocols import protocol_of
from harness.strict import Where
from harness.suite import AXES, Checkpoint, Draft, Hardware, Model, Rule, ServerSettings, Suite, Timeouts


def cell_id(model: str, quant: str, spec: str, tp: int, ep: int | None) -> str:
    """`glm5/quark-mxfp4/mtp/tp8`, `kimi/quark-mxfp4/none/tp8-ep8`."""
    return f"{model}/{quant}/{spec}/tp{tp}" + (f"-ep{ep}" if ep else "")


@dataclass(frozen=True)
class Cell:
    suite: str
    engine: str
    model: str
    checkpoint: Checkpoint
    trust_remote_code: bool
    quant: str
    spec: str
    tp: int
    ep: int | None
    draft: Draft | None
    spec_params: dict[str, int]
    fix: str | None
    server: ServerSettings
    evals: tuple[EvalConfig, ...]
    hardware: Hardware
    timeouts: Timeouts
    python: str | None = None  # the engine's Python (suite `python:`); None: the run's
    baseline_id: str | None = None  # a canary's: the cell whose baselines gate it (it must regress)

    @property
    def id(self) -> str:
        return cell_id(self.model, self.quant, self.spec, self.tp, self.ep)

    @property
    def kernels(self) -> str:
        """The kernels its quantized layers run on (harness.kernels.selection)."""
        return self.server.kernels or NATIVE

    @property
    def gpus(self) -> int:
        return self.tp if self.hardware.vendor != "cpu" else 0

    def subject(self) -> Subject:
        """What its evals measure, as the eval contract states it (evals never read a Cell)."""
        return Subject(id=self.id, suite=self.suite, engine=self.engine, model_path=self.checkpoint.path,
                       evals=self.evals)

    def coordinate(self) -> dict[str, Any]:
        return {"model": self.model, "quant": self.quant, "spec": self.spec, "tp": self.tp, "ep": self.ep}

    def describe(self) -> str:
        """`glm5/quark-mxfp4/mtp/tp8  [glm5-mxfp4-mtp #23219]  gsm8k:...`: the id, the fix it guards, its evals."""
        fix = FIXES.get(self.fix) if self.fix else None
        evals = ", ".join(EVALS[e.name].describe(e) for e in self.evals) or "no evals"
        canary = f"  [canary of {self.baseline_id}: must regress]" if self.baseline_id else ""
        return (f"{self.id}  [{fix.id} {fix.pr}]  {evals}" if fix else f"{self.id}  {evals}") + canary

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration, as results record it."""
        fix = FIXES.get(self.fix) if self.fix else None
        return {
            "id": self.id,
            "suite": self.suite,
            "engine": self.engine,
            **self.coordinate(),
            "model_path": self.checkpoint.path,
            "checkpoint_quantization": self.checkpoint.quantization,
            "trust_remote_code": self.trust_remote_code,
            "draft": None if self.draft is None else {"path": self.draft.path, "quantization": self.draft.quantization},
            "spec_params": dict(self.spec_params),
            "fix": None if fix is None else {"id": fix.id, "pr": fix.pr},
            "server_args": list(self.server.args),
            "kernels": self.kernels,
            "env": dict(self.server.env),
            "evals": {e.name: protocol_of(e) for e in self.evals},
            "hardware": {"vendor": self.hardware.vendor, "gpu_arch": list(self.hardware.gpu_arch),
                         "gpus": self.hardware.gpus},
            "timeouts": {"launch_s": self.timeouts.launch_s, "eval_s": self.timeouts.eval_s,
                         "teardown_s": self.timeouts.teardown_s},
            **({"canary_of": self.baseline_id} if self.baseline_id else {}),
            **({"memory_gib": self.server.memory_gib} if self.server.memory_gib is not None else {}),
        }


def expand(suite: Suite) -> list[Cell]:
    """Every cell of the suite, in declaration order, each checked for impossible combinations."""
    coordinates: list[tuple[Model, dict[str, Any]]] = []
    for model in suite.models:
        axes = model.axes.over(suite.axes)
        for axis in ("quant", "spec", "tp"):
            if not getattr(axes, axis):
                raise model.where.key("matrix").error(
                    f"no '{axis}' axis for model '{model.id}': set matrix.{axis} in the suite or the model"
                )
        for quant, spec, tp, ep in itertools.product(axes.quant, axes.spec, axes.tp, axes.ep or (None,)):
            coordinates.append((model, {"model": model.id, "quant": quant, "spec": spec, "tp": tp, "ep": ep}))

    _check_rules_match(suite.exclude, [c for _, c in coordinates], "exclude")
    coordinates = [(m, c) for m, c in coordinates if not any(_matches(r.match, c) for r in suite.exclude)]
    models = {m.id: m for m in suite.models}
    for rule in suite.include:
        coordinate = {"ep": None, **rule.match}
        if coordinate not in [c for _, c in coordinates]:
            coordinates.append((models[str(coordinate["model"])], coordinate))

    cells = [_make_cell(suite, model, coordinate) for model, coordinate in coordinates]
    _check_rules_match(suite.overrides, [c.coordinate() for c in cells], "override")
    _check_canary_counterparts(cells, models)
    return cells


def _check_canary_counterparts(cells: list[Cell], models: dict[str, Model]) -> None:
    ids = {cell.id for cell in cells}
    for cell in cells:
        if cell.baseline_id is not None and cell.baseline_id not in ids:
            raise models[cell.model].where.key("canary_of").error(
                f"canary cell {cell.id} has no counterpart {cell.baseline_id} to be gated against")


def _matches(match: dict[str, Any], coordinate: dict[str, Any]) -> bool:
    return all(coordinate.get(key) == value for key, value in match.items())


def _check_rules_match(rules: tuple[Rule, ...], coordinates: list[dict[str, Any]], kind: str) -> None:
    # A rule that selects nothing is almost always a typo, and a silent one would change the gate.
    for rule in rules:
        if not any(_matches(rule.match, c) for c in coordinates):
            raise rule.where.error(f"this {kind} rule {rule.match} matches no cell of the matrix")


def _axis_where(suite: Suite, model: Model, axis: str) -> Where:
    axes = model.axes.over(suite.axes)
    return axes.where.get(axis, model.where)


def _make_cell(suite: Suite, model: Model, coordinate: dict[str, Any]) -> Cell:
    quant, spec, tp, ep = (coordinate[a] for a in AXES)
    if quant not in model.checkpoints:
        raise _axis_where(suite, model, "quant").error(
            f"model '{model.id}' has no checkpoint for quant '{quant}' "
            f"(it has: {', '.join(model.checkpoints)}); add models[].checkpoints.{quant} or exclude the cell"
        )
    spec_kind = SPEC_KINDS[spec]
    if spec_kind.needs_draft and model.draft is None:
        raise model.where.key("draft").error(
            f"spec '{spec}' needs a draft model for '{model.id}': set draft.path or exclude the cell"
        )
    if suite.hardware.vendor == "cpu" and tp != 1:
        raise _axis_where(suite, model, "tp").error(f"tp {tp} needs GPUs, but hardware.vendor is 'cpu'")
    if suite.hardware.vendor != "cpu" and tp > suite.hardware.gpus:
        raise _axis_where(suite, model, "tp").error(
            f"tp {tp} is larger than hardware.gpus ({suite.hardware.gpus}) for model '{model.id}'"
        )
    engine = ENGINES[suite.engine]
    if engine.max_tp is not None and tp > engine.max_tp:
        raise _axis_where(suite, model, "tp").error(
            f"the {engine.name} engine serves on at most {engine.max_tp} device{'s' * (engine.max_tp > 1)}: "
            f"tp {tp} is too large")
    if ep is not None and (ep > tp or tp % ep):
        raise _axis_where(suite, model, "ep").error(f"ep {ep} must divide tp {tp}")
    if QUANT_KINDS[quant].online and not engine.online_quant:
        online = " and ".join(name for name, spec in ENGINES.items() if spec.online_quant)
        raise _axis_where(suite, model, "quant").error(
            f"online quant '{quant}' is a feature of {online}, not of the {engine.name} engine")
    if not engine.supports_quant(quant):
        raise _axis_where(suite, model, "quant").error(
            f"the {engine.name} engine serves quant {', '.join(sorted(engine.quants or ()))}, not '{quant}'")

    server = suite.server.then(model.server)
    fix = model.fix
    for rule in suite.overrides:
        if _matches(rule.match, coordinate):
            server = server.then(rule.server)
            fix = rule.fix or fix
    spec_params = dict(suite.speculative.get(spec, {}))
    if spec_kind.needs_draft:
        spec_params = {**DEFAULT_EAGLE_PARAMS, **spec_params}
    return Cell(
        suite=suite.name, engine=suite.engine, model=model.id, checkpoint=model.checkpoints[quant],
        trust_remote_code=model.trust_remote_code, quant=quant, spec=spec, tp=tp, ep=ep,
        draft=model.draft if spec_kind.needs_draft else None, spec_params=spec_params, fix=fix,
        server=server, evals=model.evals if model.evals is not None else suite.evals,
        hardware=suite.hardware, timeouts=suite.timeouts, python=suite.python,
        baseline_id=None if model.canary_of is None else cell_id(model.canary_of, quant, spec, tp, ep),
    )


def select(cells: list[Cell], patterns: list[str] | None) -> list[Cell]:
    """The cells whose id matches any glob pattern (all cells when there are none)."""
    if not patterns:
        return cells
    chosen = [c for c in cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(c.id, pattern) for c in cells):
            from harness.strict import did_you_mean

            raise ConfigError(
                f"--cell '{pattern}' matches no cell{did_you_mean(pattern, [c.id for c in cells])} "
                f"(see `harness list`)"
            )
    return chosen
