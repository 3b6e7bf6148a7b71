"""The eval contract: specs and data types only. What an eval is (the `Eval` record its module registers), its
config and protocol defaults, what it measures (`Subject`), what it gets beside the server (`EvalContext`) and
what a question eval hands the runner (`Prepared`).

An eval is one module (harness.evals.gsm8k, gpqa, aime, numerics) that exposes `EVAL`: its protocols, its config
parser, the canonical protocol of a config (what must match for two figures to compare), its gated metrics,
how it runs against a server that is up, and the hooks only some evals need. harness.evals.registry names each
as "module:attr" and imports it when asked for; the suite schema, the CLI's choices, harness.protocols,
harness.metrics and the cell runner all read the registry, so a new eval touches no other file.

This module imports nothing of harness above the records (results) and the foundation: the layers that run
evals (matrix, cells, pipeline) build its records, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from harness.metric_kinds import MetricDef
from harness.strict import Where

if TYPE_CHECKING:
    from harness.results import CellError, EvalResult
    from harness.sequential import Reference, Rule
    from harness.transport import Request

Scorer = Callable[[str, str], tuple[str | None, bool, dict[str, Any]]]  # (id, text) -> extracted, correct, extras


@dataclass(frozen=True)
class ProtocolDefaults:
    """What a named protocol fixes unless the suite overrides it."""

    shots: int
    shots_source: str  # "test-head" | "train" | "none"
    prompt_mode: str  # "completion" | "chat" | "token-ids"
    max_tokens: int
    temperature: float = 0.0
    repeats: int = 1


@dataclass(frozen=True)
class EvalConfig:
    """One eval as a suite declares it (protocol parameters plus transport settings)."""

    name: str
    protocol: str
    shots: int
    questions: int  # number of questions actually asked
    max_tokens: int
    temperature: float
    repeats: int
    seed: int | None = None
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int = 128
    request_timeout_s: float = 600.0
    max_error_rate: float = 0.02  # more failed requests than this and the eval is INFRA_ERROR
    data: str | None = None  # a local file for datasets that cannot be downloaded (GPQA)
    dataset: str | None = None  # an alternate dataset; None is the eval's own
    params: Mapping[str, Any] = field(default_factory=dict)  # an eval's own parameters (numerics: window, ...)


class EvalInfraError(Exception):
    """The eval could not be measured (too many failed requests): INFRA_ERROR, never REGRESSED."""

    def __init__(self, cause: str, message: str, partial: dict[str, EvalResult] | None = None):
        super().__init__(message)
        self.cause = cause
        self.partial = partial or {}


@dataclass(frozen=True)
class Subject:
    """What an eval measures, as much of a suite's cell as evals read (harness.matrix.Cell.subject() builds it):
    the cell's id, suite and engine, the checkpoint served, and the cell's evals."""

    id: str  # the cell id, `glm5/quark-mxfp4/mtp/tp8`
    suite: str
    engine: str
    model_path: str
    evals: tuple[EvalConfig, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """A question eval ready to send: requests (an iterator, built as they are sent), the scorer, and the
    protocol the result records (with the hash of the data actually read)."""

    requests: Iterator[Request]
    count: int
    scorer: Scorer
    dataset_sha256: str | None
    protocol: dict[str, Any]


@dataclass(frozen=True)
class EvalContext:
    """What an eval gets beside the server: its subject (None for `harness eval` against a server already up),
    the cell's directory in the run, and where the suite's stored references live (harness.evals.numerics)."""

    subject: Subject | None = None
    cell_dir: Path | None = None
    references: Path | None = None
    data_root: Path | None = None
    stream: TextIO | None = None
    # Eval name -> what its answers are compared with as they come (the sequential gate; harness.sequential):
    # the eval then asks in the fixed order and stops once the verdict is decided.
    sequential: Mapping[str, tuple[Reference, Rule]] = field(default_factory=dict)


@dataclass(frozen=True)
class Eval:
    """One eval, as its module registers it."""

    name: str
    protocols: Mapping[str, ProtocolDefaults]
    default_protocol: str
    metrics: tuple[MetricDef, ...]  # the gated ones, keys `<name>.<metric>`
    parse: Callable[[Any, Where], EvalConfig]  # the suite's `evals.<name>` mapping, strictly
    protocol_of: Callable[..., dict[str, Any]]  # (config, *, dataset_sha256=None) -> the canonical protocol
    protocol_keys: tuple[str, ...]  # the protocol's keys that must match for two figures to compare
    run: Callable[[EvalConfig, str, str, EvalContext], EvalResult]  # (config, base_url, model, context)
    describe: Callable[[EvalConfig], str]  # one phrase for `harness list`
    # Question evals: the requests and the scorer (harness.evals.runner), which `harness eval` and the
    # lm-eval backend use too; None: the eval runs only inside a suite.
    prepare: Callable[..., Prepared] | None = None
    fetch: Callable[..., list[Path]] | None = None  # `harness data fetch <name>` (hf_token=, sha256=)
    # Raises ConfigError naming a data file the config needs and this machine lacks: checked once per run,
    # before any server launches (a server loaded for nothing, then one harness_error per cell, otherwise).
    check_data: Callable[[EvalConfig], None] | None = None
    # Optional hooks: refuse an engine at load time; keep a cell from launching (CellError, CONFIG_ERROR);
    # promote files a run recorded beside the baselines; check those files (`harness validate`: per file, its
    # line and its problem or None).
    check_engine: Callable[[str, Where], None] | None = None
    unmeasurable: Callable[[Subject, Path], CellError | None] | None = None
    promote: Callable[..., tuple[list[str], list[str]]] | None = None
    check_stored: Callable[[Path], list[tuple[str, str | None]]] | None = None


__all__ = ["Eval", "EvalConfig", "EvalContext", "EvalInfraError", "Prepared", "ProtocolDefaults", "Scorer", "Subject"]
