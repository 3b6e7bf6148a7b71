"""Where datasets are read from: $HARNESS_DATA_DIR (default ~/.cache/harness/data), laid out as
<dataset>/<file>, so that a directory such as ../shared/data serves as a cache as it is. Each eval's module
reads and fetches its own files (GSM8K verified against its known SHA-256 on every read; GPQA's hash is
recorded in results, its text never is).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_data_dir() -> Path:
    """Where datasets live when $HARNESS_DATA_DIR is not set (`harness data fetch` writes there)."""
    return Path.home() / ".cache" / "harness" / "data"


def data_dir() -> Path:
    return Path(os.environ.get("HARNESS_DATA_DIR") or default_data_dir())


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
