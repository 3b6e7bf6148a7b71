"""The stored reference's life cycle around a run: before launch, a cell with no reference to measure against
is not launched; after the run, `harness baseline update` promotes what the reference cell recorded;
`harness validate` reads every stored one back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.evals.base import EvalConfig, Subject
from harness.evals.numerics.config import NAME, PROTOCOL, require_numpy
from harness.evals.numerics.reference import (
    RECORD_FILE,
    is_reference_cell,
    load_reference,
    stored_reference_path,
    usable_reference,
)

if TYPE_CHECKING:
    from harness.results import CellError, CellResult


def unmeasurable(subject: Subject, references: Path) -> CellError | None:
    """The cell's numerics eval has no stored reference to measure against: it is not launched (CONFIG_ERROR)."""
    from harness.results import CellError

    problem = reference_problem(subject, references)
    return None if problem is None else CellError("numerics_reference", problem)


def reference_problem(subject: Subject, references: Path) -> str | None:
    """Why a cell's numerics eval could not measure anything (checked before launch), or None.

    The reference cell itself runs without a stored reference: it records the one to promote."""
    require_numpy()
    for config in subject.evals:
        if config.name != NAME or is_reference_cell(subject, config, references):
            continue
        _, problem = usable_reference(config, references)
        if problem:
            return (f"numerics: {problem}; run the reference cell {config.params['reference']} and promote its "
                    f"distributions (harness baseline update --from reports/<run> --cell '{config.params['reference']}')")
    return None


def promote_references(run_dir: Path, cells: list[CellResult], references: Path, *, force: bool,
                       dry_run: bool) -> tuple[list[str], list[str]]:
    """Store the references a run's reference cells recorded: (what was (or would be) stored, what was
    refused). A stored reference is replaced only with `force`: every candidate baseline measured against
    it would stop comparing (its protocol names the reference's SHA-256)."""
    import shutil

    from harness.results import cell_dir_name

    stored, refused = [], []
    for result in cells:
        evaluation = result.evals.get(NAME)
        source = run_dir / "cells" / cell_dir_name(result.cell_id) / RECORD_FILE
        if evaluation is None or "recorded" not in evaluation.details or not source.exists():
            continue
        recorded = load_reference(source)
        config = EvalConfig(NAME, PROTOCOL, 0, 0, 1, 0.0, 1, params={"reference": evaluation.protocol["reference"]})
        target = stored_reference_path(config, references)
        before = load_reference(target).meta["sha256"] if target.exists() else None
        if before == recorded.meta["sha256"]:
            continue
        if before is not None and not force:
            refused.append(f"{result.cell_id}: numerics reference {target} differs ({before[:12]} -> "
                           f"{recorded.meta['sha256'][:12]}); replacing it makes every numerics baseline measured "
                           f"against it NOT_COMPARABLE until measured again (use --force)")
            continue
        if not dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(source, partial)
            partial.replace(target)
        stored.append(f"{result.cell_id} numerics reference: {before[:12] if before else 'none'} -> "
                      f"{recorded.meta['sha256'][:12]} ({target})")
    return stored, refused


def check_stored(baselines_dir: Path) -> list[tuple[str, str | None]]:
    """`harness validate`: every stored reference read back (kind, version and digest checked), as
    (its line, its problem or None)."""
    from harness.errors import ConfigError

    checked: list[tuple[str, str | None]] = []
    for path in sorted((baselines_dir / "references").glob("*/*.numerics.npz")):
        try:
            require_numpy()
            reference = load_reference(path)
        except ConfigError as problem:
            checked.append((str(path), str(problem)))
            continue
        windows, window = reference.token_ids.shape
        checked.append((f"{path}: numerics reference, {windows} windows of {window} tokens, "
                        f"sha256 {reference.meta['sha256'][:12]}", None))
    return checked
