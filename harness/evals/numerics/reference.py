"""The stored reference: the reference cell's top-k distributions as arrays (compact dtypes, a SHA-256 over
them), where `harness baseline update` keeps it, and whether it fits a suite's eval."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.evals.base import EvalConfig, Subject
from harness.evals.numerics.config import protocol_of

if TYPE_CHECKING:
    import numpy as np

    from harness.evals.numerics.logprobs import PositionTopK

REFERENCE_KIND = "harness.numerics_reference"
REFERENCE_SCHEMA_VERSION = 1
RECORD_FILE = "numerics-reference.npz"  # in the reference cell's directory of a run


@dataclass(frozen=True)
class TopKSet:
    """Every sequence's PositionTopK as arrays: ids/logprobs [S, P, k], actual/tail [S, P] (P = window - 1)."""

    token_ids: np.ndarray  # [S, window] int32
    ids: np.ndarray
    logprobs: np.ndarray
    actual: np.ndarray
    tail: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def stored(self) -> TopKSet:
        """As a reference keeps it: top-k logprobs in float16, the rest as is (int32 / float32)."""
        import numpy as np

        return TopKSet(self.token_ids.astype(np.int32), self.ids.astype(np.int32),
                       self.logprobs.astype(np.float16), self.actual.astype(np.float32),
                       self.tail.astype(np.float32), dict(self.meta))

    def digest(self) -> str:
        """SHA-256 over the arrays (dtype, shape and bytes), the reference's identity in every protocol."""
        digest = hashlib.sha256()
        for name in _ARRAYS:
            array = getattr(self, name)
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


_ARRAYS = ("token_ids", "ids", "logprobs", "actual", "tail")


def stack(windows: list[list[int]], measured: list[PositionTopK], meta: dict[str, Any]) -> TopKSet:
    import numpy as np

    return TopKSet(np.asarray(windows, dtype=np.int32), np.stack([m.ids for m in measured]),
                   np.stack([m.logprobs for m in measured]), np.stack([m.actual for m in measured]),
                   np.stack([m.tail for m in measured]), meta)


def save_reference(path: Path, topk: TopKSet) -> str:
    """Write the stored form (atomically); returns its digest."""
    import numpy as np

    stored = topk.stored()
    digest = stored.digest()
    meta = {"kind": REFERENCE_KIND, "schema_version": REFERENCE_SCHEMA_VERSION, **stored.meta, "sha256": digest}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.npz")
    np.savez_compressed(tmp, meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
                        **{name: getattr(stored, name) for name in _ARRAYS})
    tmp.replace(path)
    return digest


def load_reference(path: Path) -> TopKSet:
    """A stored reference, its kind, version and digest checked (a one-line ConfigError otherwise)."""
    import numpy as np

    from harness.errors import ConfigError

    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
            reference = TopKSet(**{name: archive[name] for name in _ARRAYS}, meta=meta)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such numerics reference") from None
    except (OSError, KeyError, ValueError) as problem:
        raise ConfigError(f"{path}: not a numerics reference: {' '.join(str(problem).split())}") from None
    if meta.get("kind") != REFERENCE_KIND or meta.get("schema_version") != REFERENCE_SCHEMA_VERSION:
        raise ConfigError(f"{path}: kind/schema_version: expected {REFERENCE_KIND} v{REFERENCE_SCHEMA_VERSION}")
    if reference.digest() != meta.get("sha256"):
        raise ConfigError(f"{path}: sha256: the arrays do not match the recorded digest (a damaged file)")
    return reference


def reference_mismatch(reference: TopKSet, config: EvalConfig) -> str | None:
    """Why a stored reference cannot serve this eval's protocol, or None."""
    recorded = reference.meta.get("protocol", {})
    wanted = protocol_of(config)
    for key in ("dataset", "sequences", "window", "top_logprobs"):
        if recorded.get(key) != wanted[key]:
            return f"it was recorded with {key} {recorded.get(key)!r}, the suite asks {wanted[key]!r}"
    return None


def stored_reference_path(config: EvalConfig, references: Path) -> Path:
    """Where `harness baseline update` stores the eval's reference: `references` is
    baselines/references/<the suite's baselines name>; `reference: other-suite:cell` reads another suite's."""
    from harness.results import cell_dir_name

    suite, separator, cell_id = config.params["reference"].rpartition(":")
    folder = references.parent / suite if separator else references
    return folder / f"{cell_dir_name(cell_id)}.numerics.npz"


def is_reference_cell(subject: Subject, config: EvalConfig, references: Path) -> bool:
    return config.params["reference"] in (subject.id, f"{references.name}:{subject.id}")


def usable_reference(config: EvalConfig, references: Path) -> tuple[TopKSet | None, str | None]:
    """(the stored reference, None), or (None, why there is none that fits this eval)."""
    path = stored_reference_path(config, references)
    if not path.exists():
        return None, f"no stored reference {path}"
    reference = load_reference(path)
    mismatch = reference_mismatch(reference, config)
    return (None, f"the stored reference {path} does not fit: {mismatch}") if mismatch else (reference, None)
