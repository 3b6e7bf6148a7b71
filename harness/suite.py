"""Suites: the YAML files under suites/ that say what to run, loaded strictly into types.

The format is documented in docs/suites.md. Loading checks every key and type;
expanding the matrix (harness.matrix) checks the combinations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import strict
from harness.axes import DEFAULT_EAGLE_PARAMS, QUANT_KINDS, SPEC_KINDS
from harness.engine_flags import refused_flag
from harness.engine_specs import ENGINE_NAMES, ENGINES
from harness.errors import ConfigError
from harness.evals.base import EvalConfig
from harness.evals.registry import EVALS
from harness.fixes import FIXES
from harness.kernels.selection import ENGINES as KERNEL_ENGINES
from harness.kernels.selection import KERNELS
from harness.metrics import METRICS, Tolerance
from harness.strict import Where

SUITE_SCHEMA_VERSION = 1
VENDORS = ("amd", "nvidia", "cpu", "auto")  # auto: the GPU vendor found at run time, else cpu
AXES = ("quant", "spec", "tp", "ep")
MATCH_KEYS = ("model",) + AXES


@dataclass(frozen=True)
class ServerSettings:
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    kernels: str | None = None  # harness.kernels.selection.KERNELS; None: not set here (native unless overridden)
    # The GiB of its GPU's memory a server sizes its static pools to: at launch harness passes it as the engine's
    # fraction of the GPU the cell landed on (harness.engine_flags.memory_fraction_args), so cells sized on a
    # 141 GB GPU keep their size on an 80 GB one.
    memory_gib: float | None = None

    def then(self, other: ServerSettings) -> ServerSettings:
        """These settings followed by `other`: args appended, env overridden key by key, kernels and memory_gib
        if `other` sets them."""
        return ServerSettings(self.args + other.args, {**self.env, **other.env}, other.kernels or self.kernels,
                              other.memory_gib if other.memory_gib is not None else self.memory_gib)


@dataclass(frozen=True)
class Checkpoint:
    path: str
    # An explicit engine --quantization value, where the engine cannot detect it.
    quantization: str | None = None


@dataclass(frozen=True)
class Draft:
    path: str
    quantization: str | None = None  # e.g. "unquant" for --speculative-draft-model-quantization


@dataclass(frozen=True)
class Axes:
    quant: tuple[str, ...] = ()
    spec: tuple[str, ...] = ()
    tp: tuple[int, ...] = ()
    ep: tuple[int | None, ...] = ()
    where: dict[str, Where] = field(default_factory=dict, compare=False)

    def over(self, base: Axes) -> Axes:
        """These axes, falling back to `base` for each axis not set here."""
        picked = {name: getattr(self, name) or getattr(base, name) for name in AXES}
        where = {name: (self.where if getattr(self, name) else base.where).get(name) for name in AXES}
        return Axes(**picked, where={k: v for k, v in where.items() if v is not None})


@dataclass(frozen=True)
class Model:
    id: str
    checkpoints: dict[str, Checkpoint]
    trust_remote_code: bool
    draft: Draft | None
    fix: str | None
    axes: Axes
    server: ServerSettings
    evals: tuple[EvalConfig, ...] | None
    where: Where
    # A planted-defect copy of another model of the suite: its cells are gated against that model's
    # baselines and must come out REGRESSED (the gate's power, proven every run).
    canary_of: str | None = None


@dataclass(frozen=True)
class Rule:
    """An include, exclude or override entry: a partial cell coordinate."""

    match: dict[str, Any]
    where: Where
    server: ServerSettings = ServerSettings()
    fix: str | None = None


@dataclass(frozen=True)
class Hardware:
    vendor: str = "amd"
    gpu_arch: tuple[str, ...] = ()
    gpus: int = 8


@dataclass(frozen=True)
class Timeouts:
    launch_s: float = 600.0
    eval_s: float = 3600.0
    teardown_s: float = 60.0


def _default_min_effects() -> dict[str, float]:
    """Each eval metric's own minimum effect (harness.evals.registry)."""
    return {key: m.min_effect for key, m in METRICS.items() if m.min_effect is not None}


def _default_memory_tolerances() -> dict[str, Tolerance]:
    """Each memory metric's own tolerance (harness.metrics)."""
    return {key: m.tolerance for key, m in METRICS.items() if m.tolerance is not None}


@dataclass(frozen=True)
class GateSettings:
    alpha: float = 0.01
    # The smallest drop that counts as a regression, per accuracy metric (asv's "factor AND test").
    min_effect: dict[str, float] = field(default_factory=_default_min_effects)
    # How far each memory figure may rise over its baseline (harness.memory GATED, by default).
    memory: dict[str, Tolerance] = field(default_factory=_default_memory_tolerances)
    accept_length_abs: float = 0.15
    # Stop a question eval as soon as its accuracy verdict is decided (harness.sequential; docs/gate.md).
    sequential: bool = False

    def min_effect_for(self, metric: str) -> float:
        return self.min_effect.get(metric, 0.01)

    def memory_tolerance(self, metric: str) -> Tolerance:
        return self.memory.get(metric) or _default_memory_tolerances()[metric]

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> GateSettings:
        """The gate a run recorded (results.json `gate`). A run of an older harness recorded one memory
        tolerance for every figure (`memory_abs_gib`, `memory_rel`): it is read as exactly that."""
        body = dict(body)
        old_abs, old_rel = body.pop("memory_abs_gib", None), body.pop("memory_rel", None)
        if old_abs is not None or old_rel is not None:
            uniform = Tolerance(rel=0.05 if old_rel is None else old_rel, abs_gib=0.5 if old_abs is None else old_abs)
            body["memory"] = {key: uniform for key in _default_memory_tolerances()}
        else:
            body["memory"] = {key: Tolerance(**value) for key, value in body.get("memory", {}).items()}
        return cls(**body)


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    engine: str
    hardware: Hardware
    timeouts: Timeouts
    server: ServerSettings
    speculative: dict[str, dict[str, int]]
    evals: tuple[EvalConfig, ...]
    gate: GateSettings
    axes: Axes
    models: tuple[Model, ...]
    include: tuple[Rule, ...]
    exclude: tuple[Rule, ...]
    overrides: tuple[Rule, ...]
    baselines: str = ""  # the baseline file's suite name: this suite's own unless set
    # The Python that runs the engine's servers (e.g. an engine installed in its own virtualenv), relative
    # to the working directory; None: harness's own, or `harness run --python`.
    python: str | None = None
    # `harness run --executor slurm`'s defaults for this suite (partition, account, time, gpus_per_node): a flag
    # wins, then a HARNESS_SLURM_* variable (the site's), then these.
    slurm: dict[str, Any] = field(default_factory=dict)


def load_suite(path: Path) -> Suite:
    """Read and strictly validate one suite file (matrix combinations are checked on expansion)."""
    where = Where(str(path))
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such suite file") from None
    try:
        document = strict.load_yaml(text)
    except (yaml.YAMLError, strict.DocumentTooComplex) as error:
        raise strict.yaml_error(str(path), error, text) from None
    return _parse_suite(document, path, where)


def find_suite(name_or_path: str, suites_dir: Path) -> Path:
    """`kimi` -> suites/kimi.yaml; a path is taken as is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    if not suites_dir.is_dir():
        raise ConfigError(f"{suites_dir}: no such directory (--suites-dir), so no suite '{name_or_path}'")
    path = suites_dir / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in suites_dir.glob("*.yaml"))
        raise strict.unknown_choice(Where(str(suites_dir)), "suite", name_or_path, known)
    return path


def _parse_suite(document: Any, path: Path, where: Where) -> Suite:
    doc = strict.mapping(
        document, where,
        allowed=("schema_version", "name", "description", "engine", "hardware", "timeouts", "server",
                 "speculative", "evals", "gate", "matrix", "models", "include", "exclude", "overrides",
                 "baselines", "python", "slurm"),
        required=("schema_version", "name", "engine", "models"),
    )
    version = strict.integer(doc["schema_version"], where.key("schema_version"))
    if version != SUITE_SCHEMA_VERSION:
        raise where.key("schema_version").error(
            f"suite schema {version} is not supported (this harness reads {SUITE_SCHEMA_VERSION})"
        )
    name = strict.string(doc["name"], where.key("name"))
    if name != path.stem:
        raise where.key("name").error(f"'{name}' must equal the file name '{path.stem}'")
    engine = strict.choice(doc["engine"], where.key("engine"), what="engine", choices=ENGINE_NAMES)
    # The parts below are independent: every problem among them is reported, not only the first.
    problems = strict.Problems()
    models_where = where.key("models")
    items = strict.sequence(doc["models"], models_where, non_empty=True)
    parsed = [problems.check(functools.partial(_parse_model, item, models_where.key(i), engine), None)
              for i, item in enumerate(items)]
    models = tuple(model for model in parsed if model is not None)
    # Rules may name a model whose entry has an error of its own: its id still counts as known.
    raw_ids = [item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
               for item in items]
    model_ids = [model_id for model_id in raw_ids if model_id is not None]
    problems.check(lambda: _check_unique(raw_ids, models_where, "model id"), None)
    problems.check(lambda: _check_canaries(models, model_ids), None)

    def rules(kind: str, key: str) -> tuple[Rule, ...]:
        return problems.check(lambda: _parse_rules(doc.get(key, []), where.key(key), model_ids, engine, kind=kind), ())

    suite = Suite(
        name=name,
        path=path,
        description=problems.check(lambda: strict.string(doc["description"], where.key("description")), "")
        if "description" in doc else "",
        engine=engine,
        hardware=problems.check(lambda: _parse_hardware(doc.get("hardware", {}), where.key("hardware")), Hardware()),
        timeouts=problems.check(lambda: _parse_timeouts(doc.get("timeouts", {}), where.key("timeouts")), Timeouts()),
        server=problems.check(lambda: _parse_server(doc.get("server", {}), where.key("server"), engine),
                              ServerSettings()),
        speculative=problems.check(lambda: _parse_speculative(doc.get("speculative", {}), where.key("speculative")),
                                   {}),
        evals=problems.check(lambda: _parse_evals(doc.get("evals", {}), where.key("evals"), engine), ()),
        gate=problems.check(lambda: _parse_gate(doc.get("gate", {}), where.key("gate")), GateSettings()),
        axes=problems.check(lambda: _parse_axes(doc.get("matrix", {}), where.key("matrix")), Axes()),
        models=models,
        include=rules("include", "include"),
        exclude=rules("exclude", "exclude"),
        overrides=rules("override", "overrides"),
        baselines=problems.check(lambda: strict.string(doc.get("baselines", name), where.key("baselines")), name),
        python=problems.check(lambda: None if doc.get("python") is None
                              else strict.string(doc["python"], where.key("python")), None),
        slurm=problems.check(lambda: _parse_slurm(doc.get("slurm", {}), where.key("slurm")), {}),
    )
    problems.raise_any()
    return suite


def _check_canaries(models: tuple[Model, ...], model_ids: list[str]) -> None:
    canaries = {m.id for m in models if m.canary_of}
    for model in models:
        if model.canary_of is None:
            continue
        where = model.where.key("canary_of")
        strict.choice(model.canary_of, where, what="model", choices=[i for i in model_ids if i != model.id])
        if model.canary_of in canaries:
            raise where.error(f"'{model.canary_of}' is a canary itself: name the model whose baselines gate it")


def _check_unique(values: list[str | None], where: Where, what: str) -> None:
    seen = set()
    for i, value in enumerate(values):
        if value is None:  # an entry whose own problem is reported already
            continue
        if value in seen:
            raise where.key(i).error(f"duplicate {what} '{value}'")
        seen.add(value)


def _parse_hardware(value: Any, where: Where) -> Hardware:
    doc = strict.mapping(value, where, allowed=("vendor", "gpu_arch", "gpus"))
    vendor = strict.choice(doc.get("vendor", "amd"), where.key("vendor"), what="vendor", choices=VENDORS)
    default_gpus = {"cpu": 0, "auto": 1}.get(vendor, 8)
    gpus = strict.integer(doc.get("gpus", default_gpus), where.key("gpus"), minimum=0)
    if vendor != "cpu" and gpus == 0:
        raise where.key("gpus").error(f"vendor '{vendor}' needs gpus >= 1")
    return Hardware(vendor, strict.string_list(doc.get("gpu_arch", []), where.key("gpu_arch")), gpus)


def _parse_slurm(value: Any, where: Where) -> dict[str, Any]:
    doc = strict.mapping(value, where, allowed=("partition", "account", "time", "gpus_per_node"))
    parsed: dict[str, Any] = {key: strict.string(doc[key], where.key(key)) for key in ("partition", "account", "time")
                              if key in doc}
    if "gpus_per_node" in doc:
        parsed["gpus_per_node"] = strict.integer(doc["gpus_per_node"], where.key("gpus_per_node"), minimum=0)
    return parsed


def _parse_timeouts(value: Any, where: Where) -> Timeouts:
    doc = strict.mapping(value, where, allowed=("launch_s", "eval_s", "teardown_s"))
    default = Timeouts()
    return Timeouts(**{
        key: strict.number(doc.get(key, getattr(default, key)), where.key(key), minimum=1)
        for key in ("launch_s", "eval_s", "teardown_s")
    })


def _parse_server(value: Any, where: Where, engine: str) -> ServerSettings:
    doc = strict.mapping(value, where, allowed=("args", "env", "kernels", "memory_gib"))
    args = strict.string_list(doc.get("args", []), where.key("args"))
    for i, arg in enumerate(args):  # the engine owns the flags the matrix sets, however they are spelled
        managed = refused_flag(engine, arg)
        if managed is not None:
            flag = arg.split("=", 1)[0]
            spelled = "" if flag == managed else f" (argparse reads it as '{managed}')"
            raise where.key("args").key(i).error(
                f"'{flag}'{spelled} is set by the harness from the matrix and the model; remove it here"
            )
    kernels = None
    if "kernels" in doc:
        kernels = strict.choice(doc["kernels"], where.key("kernels"), what="kernels", choices=KERNELS)
        if engine not in KERNEL_ENGINES.get(kernels, (engine,)):
            raise where.key("kernels").error(
                f"'{kernels}' stands in for aiter in {' and '.join(KERNEL_ENGINES[kernels])}'s MXFP4 path; "
                f"the {engine} engine never calls aiter")
    return ServerSettings(args, strict.string_map(doc.get("env", {}), where.key("env")), kernels,
                          _parse_memory_gib(doc, args, where, engine))


def _parse_memory_gib(doc: dict[str, Any], args: tuple[str, ...], where: Where, engine: str) -> float | None:
    if doc.get("memory_gib") is None:
        return None
    memory_gib = strict.number(doc["memory_gib"], where.key("memory_gib"), minimum=0.01)
    fraction_flag = ENGINES[engine].memory_fraction_flag
    if fraction_flag is None:
        raise where.key("memory_gib").error(f"the {engine} engine takes no memory fraction to size")
    if any(arg.split("=", 1)[0].replace("_", "-") == fraction_flag for arg in args):
        raise where.key("args").error(f"'{fraction_flag}' and memory_gib both size the server: keep one")
    return memory_gib


def _parse_speculative(value: Any, where: Where) -> dict[str, dict[str, int]]:
    doc = strict.mapping(value, where, allowed=[k for k, v in SPEC_KINDS.items() if v.algorithm])
    out: dict[str, dict[str, int]] = {}
    for spec, params in doc.items():
        spec_where = where.key(spec)
        params = strict.mapping(params, spec_where, allowed=tuple(DEFAULT_EAGLE_PARAMS))
        out[spec] = {k: strict.integer(v, spec_where.key(k), minimum=1) for k, v in params.items()}
    return out


def _parse_evals(value: Any, where: Where, engine: str) -> tuple[EvalConfig, ...]:
    doc = strict.mapping(value, where, allowed=tuple(EVALS))
    for name in doc:  # e.g. prompt logprobs: an engine that has none is refused here, never reported as zero
        check_engine = EVALS[name].check_engine
        if check_engine is not None:
            check_engine(engine, where.key(name))
    return tuple(parse_eval(name, params, where.key(name)) for name, params in doc.items())


def parse_eval(name: str, value: Any, where: Where) -> EvalConfig:
    """One eval's mapping, by its own parser (harness.evals.registry)."""
    return EVALS[name].parse(value, where)


def _parse_gate(value: Any, where: Where) -> GateSettings:
    doc = strict.mapping(value, where, allowed=("alpha", "min_effect", "memory", "accept_length_abs",
                                                "sequential", "memory_abs_gib", "memory_rel"))
    for replaced in ("memory_abs_gib", "memory_rel"):
        if replaced in doc:
            raise where.key(replaced).error("replaced by a tolerance per memory metric: gate.memory.<metric>: "
                                            "{rel: 0.05, abs_gib: 0.05} (docs/gate.md)")
    default = GateSettings()
    accuracy_metrics = [k for k, m in METRICS.items() if m.kind.statistical]
    effects = strict.mapping(doc.get("min_effect", {}), where.key("min_effect"), allowed=accuracy_metrics)
    tolerances = strict.mapping(doc.get("memory", {}), where.key("memory"), allowed=default.memory)
    return GateSettings(
        alpha=strict.number(doc.get("alpha", default.alpha), where.key("alpha"), minimum=1e-9, maximum=0.5),
        min_effect={**default.min_effect, **{
            k: strict.number(v, where.key("min_effect").key(k), minimum=0.0, maximum=1.0) for k, v in effects.items()
        }},
        memory={**default.memory, **{k: _parse_tolerance(v, where.key("memory").key(k)) for k, v in tolerances.items()}},
        accept_length_abs=strict.number(doc.get("accept_length_abs", default.accept_length_abs),
                                        where.key("accept_length_abs"), minimum=0.0),
        sequential=strict.boolean(doc.get("sequential", default.sequential), where.key("sequential")),
    )


def _parse_tolerance(value: Any, where: Where) -> Tolerance:
    doc = strict.mapping(value, where, allowed=("rel", "abs_gib"), required=("rel", "abs_gib"))
    return Tolerance(rel=strict.number(doc["rel"], where.key("rel"), minimum=0.0, maximum=1.0),
                     abs_gib=strict.number(doc["abs_gib"], where.key("abs_gib"), minimum=0.0))


def _parse_axes(value: Any, where: Where) -> Axes:
    doc = strict.mapping(value, where, allowed=AXES)
    found: dict[str, tuple] = {}
    places: dict[str, Where] = {}
    for axis, items in doc.items():
        axis_where = where.key(axis)
        values = strict.sequence(items, axis_where, non_empty=True)
        found[axis] = tuple(_axis_value(axis, item, axis_where.key(i)) for i, item in enumerate(values))
        places[axis] = axis_where
        if len(set(found[axis])) != len(found[axis]):
            raise axis_where.error(f"duplicate values in {found[axis]}")
    return Axes(**found, where=places)


def _axis_value(axis: str, value: Any, where: Where) -> Any:
    if axis == "quant":
        return strict.choice(value, where, what="quant", choices=QUANT_KINDS)
    if axis == "spec":
        return strict.choice(value, where, what="spec", choices=SPEC_KINDS)
    if axis == "ep" and value is None:
        return None
    size = strict.integer(value, where, minimum=1)
    if size & (size - 1):
        raise where.error(f"{axis} must be a power of two, got {size}")
    return size


def _parse_model(value: Any, where: Where, engine: str) -> Model:
    doc = strict.mapping(
        value, where,
        allowed=("id", "checkpoints", "trust_remote_code", "draft", "fix", "matrix", "server", "evals", "canary_of"),
        required=("id", "checkpoints"),
    )
    model_id = strict.string(doc["id"], where.key("id"))
    if "/" in model_id or any(ch.isspace() or not ch.isprintable() for ch in model_id):
        raise where.key("id").error(f"{model_id!r} must not contain '/', spaces or control characters "
                                    f"(it is part of cell ids, directory names and report tables)")
    checkpoints_where = where.key("checkpoints")
    checkpoints_doc = strict.mapping(doc["checkpoints"], checkpoints_where, allowed=QUANT_KINDS)
    if not checkpoints_doc:
        raise checkpoints_where.error("expected at least one checkpoint")
    checkpoints = {quant: _parse_checkpoint(v, checkpoints_where.key(quant)) for quant, v in checkpoints_doc.items()}
    fix = doc.get("fix")
    return Model(
        id=model_id,
        checkpoints=checkpoints,
        trust_remote_code=strict.boolean(doc.get("trust_remote_code", False), where.key("trust_remote_code")),
        draft=_parse_draft(doc["draft"], where.key("draft")) if "draft" in doc else None,
        fix=None if fix is None else strict.choice(fix, where.key("fix"), what="fix id", choices=FIXES),
        axes=_parse_axes(doc.get("matrix", {}), where.key("matrix")),
        server=_parse_server(doc.get("server", {}), where.key("server"), engine),
        evals=_parse_evals(doc["evals"], where.key("evals"), engine) if "evals" in doc else None,
        where=where,
        canary_of=None if doc.get("canary_of") is None else strict.string(doc["canary_of"], where.key("canary_of")),
    )


def _parse_checkpoint(value: Any, where: Where) -> Checkpoint:
    if isinstance(value, str):
        return Checkpoint(strict.string(value, where))
    doc = strict.mapping(value, where, allowed=("path", "quantization"), required=("path",))
    quantization = doc.get("quantization")
    return Checkpoint(strict.string(doc["path"], where.key("path")),
                      None if quantization is None else strict.string(quantization, where.key("quantization")))


def _parse_draft(value: Any, where: Where) -> Draft:
    doc = strict.mapping(value, where, allowed=("path", "quantization"), required=("path",))
    quantization = doc.get("quantization")
    return Draft(strict.string(doc["path"], where.key("path")),
                 None if quantization is None else strict.string(quantization, where.key("quantization")))


def _parse_rules(value: Any, where: Where, model_ids: list[str], engine: str, *, kind: str) -> tuple[Rule, ...]:
    rules = []
    for i, item in enumerate(strict.sequence(value, where)):
        rule_where = where.key(i)
        if kind == "override":
            doc = strict.mapping(item, rule_where, allowed=("match", "server", "fix"), required=("match",))
            match = _parse_match(doc["match"], rule_where.key("match"), model_ids, complete=False)
            fix = doc.get("fix")
            rules.append(Rule(
                match, rule_where,
                server=_parse_server(doc.get("server", {}), rule_where.key("server"), engine),
                fix=None if fix is None else strict.choice(fix, rule_where.key("fix"), what="fix id", choices=FIXES),
            ))
        else:
            rules.append(Rule(_parse_match(item, rule_where, model_ids, complete=kind == "include"), rule_where))
    return tuple(rules)


def _parse_match(value: Any, where: Where, model_ids: list[str], *, complete: bool) -> dict[str, Any]:
    required = ("model", "quant", "spec", "tp") if complete else ()
    doc = strict.mapping(value, where, allowed=MATCH_KEYS, required=required)
    if not doc:
        raise where.error("an empty match selects every cell; name at least one of: " + ", ".join(MATCH_KEYS))
    match: dict[str, Any] = {}
    for key, item in doc.items():
        if key == "model":
            match[key] = strict.choice(item, where.key(key), what="model", choices=model_ids)
        else:
            match[key] = _axis_value(key, item, where.key(key))
    return match
