"""Versioned files: every result, baseline and outcome file carries `kind` and `schema_version`.

Reading an older version applies the registered migrations one step at a time (asv's
`update_to_N`). Results migrate in memory; files under version control (baselines) are refused
with the `harness upgrade` command that rewrites them, so a migration is always a visible diff.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

Migration = Callable[[dict[str, Any]], dict[str, Any]]

CURRENT_VERSIONS = {
    "harness.run": 1,
    "harness.cell_result": 1,
    "harness.baselines": 1,
    "harness.outcomes": 1,
    "harness.run_plan": 1,
    "harness.item_values": 1,
}

# MIGRATIONS[kind][n] turns a version-n document into version n+1. None are needed yet: version 1
# is the first released format. A format change adds its step here and bumps CURRENT_VERSIONS.
MIGRATIONS: dict[str, dict[int, Migration]] = {kind: {} for kind in CURRENT_VERSIONS}


def read_document(path: Path) -> Any:
    """Parse a JSON or YAML file, turning parse errors into one-line ConfigErrors."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    from harness import strict

    if path.suffix != ".json":
        try:
            return strict.load_yaml(text)
        except (yaml.YAMLError, strict.DocumentTooComplex) as error:
            raise strict.yaml_error(str(path), error, text) from None
    try:
        return strict.load_json(text)
    except ValueError as error:  # json.JSONDecodeError and DocumentTooComplex are ValueErrors
        raise ConfigError(f"{path}: not valid JSON: {' '.join(str(error).split())}") from None


def check_version(document: Any, path: Path, kind: str, *, migrate: bool) -> dict[str, Any]:
    """Return the document at the current schema version, migrating or refusing older ones."""
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    found_kind = document.get("kind")
    if found_kind != kind:
        raise ConfigError(f"{path}: kind: expected '{kind}', found {found_kind!r}")
    version = document.get("schema_version")
    current = CURRENT_VERSIONS[kind]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{path}: schema_version: expected an integer >= 1, found {version!r}")
    if version > current:
        raise ConfigError(f"{path}: schema_version {version} is newer than this harness reads ({current}); "
                          f"upgrade harness")
    if version == current:
        return document
    if not migrate:
        raise ConfigError(f"{path}: schema_version {version} is older than {current}; "
                          f"run `harness upgrade {path}` to rewrite it")
    return migrate_document(document, path, kind)


def migrate_document(document: dict[str, Any], path: Path, kind: str) -> dict[str, Any]:
    current = CURRENT_VERSIONS[kind]
    version = document["schema_version"]
    while version < current:
        step = MIGRATIONS[kind].get(version)
        if step is None:
            raise ConfigError(f"{path}: no migration from {kind} schema {version} to {version + 1}; "
                              f"this file cannot be read by harness {current}")
        document = step(dict(document))
        version += 1
        document["schema_version"] = version
    return document


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader never sees it half-written, even after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is wrong for files people share and commit
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, document: Any) -> None:
    from harness.secrets import redact_document

    document = redact_document(document)
    try:
        text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:  # a NaN or infinity got through: written as null, never as bare NaN (not JSON)
        text = json.dumps(_finite(document), indent=2, sort_keys=False)
    write_atomic(path, text + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_yaml(path: Path, document: Any) -> None:
    from harness.secrets import redact_document

    document = redact_document(document)
    write_atomic(path, yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100))
