"""Datasets: where they are read from, and how they are fetched and verified.

Cache: $HARNESS_DATA_DIR (default ~/.cache/harness/data), laid out as <dataset>/<file>, so that
a directory such as ../shared/data serves as a cache as it is. GSM8K's files are verified against
their known SHA-256 on every read; GPQA's hash is recorded in results, its text never is.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.errors import ConfigError
from harness.protocols import GSM8K_TEST_SHA256, GSM8K_TRAIN_SHA256

GSM8K_BASE_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/"
GSM8K_FILES = {"test.jsonl": GSM8K_TEST_SHA256, "train.jsonl": GSM8K_TRAIN_SHA256}
GPQA_CSV_URL = "https://openaipublic.blob.core.windows.net/simple-evals/gpqa_diamond.csv"
GPQA_FILE = "gpqa_diamond.csv"


def data_dir() -> Path:
    return Path(os.environ.get("HARNESS_DATA_DIR") or Path.home() / ".cache" / "harness" / "data")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gsm8k_path(split: str, root: Path | None = None) -> Path:
    name = f"{split}.jsonl"
    path = (root or data_dir()) / "gsm8k" / name
    if not path.exists():
        raise ConfigError(f"{path}: GSM8K {name} is missing; run `harness data fetch gsm8k` (needs internet), "
                          f"or point HARNESS_DATA_DIR at a directory holding gsm8k/{name}")
    digest = sha256_of(path)
    if digest != GSM8K_FILES[name]:
        raise ConfigError(f"{path}: SHA-256 {digest[:12]}... is not GSM8K's {GSM8K_FILES[name][:12]}...; "
                          f"delete it and run `harness data fetch gsm8k`")
    return path


def read_gsm8k(split: str, root: Path | None = None) -> list[dict[str, str]]:
    path = gsm8k_path(split, root)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gpqa_path(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise ConfigError(f"{path}: GPQA data file not found")
        return path
    path = data_dir() / "gpqa" / GPQA_FILE
    if not path.exists():
        raise ConfigError(f"{path}: GPQA Diamond is missing; run `harness data fetch gpqa` (needs internet; "
                          f"--hf-token for the gated hub copy), or give a local CSV or zip with `data:` / --data")
    return path


def fetch_gsm8k(root: Path | None = None) -> list[Path]:
    from harness.transport import download

    written = []
    for name, digest in GSM8K_FILES.items():
        target = (root or data_dir()) / "gsm8k" / name
        if target.exists() and sha256_of(target) == digest:
            written.append(target)
            continue
        download(GSM8K_BASE_URL + name, target, sha256=digest)
        written.append(target)
    return written


def fetch_gpqa(root: Path | None = None, *, hf_token: str | None = None, sha256: str | None = None) -> Path:
    target = (root or data_dir()) / "gpqa" / GPQA_FILE
    if hf_token:
        try:
            from huggingface_hub import hf_hub_download  # optional: only for the gated hub copy
        except ImportError:
            raise ConfigError("--hf-token needs huggingface_hub: pip install huggingface_hub") from None
        source = Path(hf_hub_download(repo_id="Idavidrein/gpqa", filename=GPQA_FILE, repo_type="dataset",
                                      token=hf_token))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    else:
        from harness.transport import download

        download(GPQA_CSV_URL, target, sha256=sha256)
    if sha256 and sha256_of(target) != sha256:
        target.unlink()
        raise ConfigError(f"{target}: SHA-256 does not match --sha256")
    return target
