"""Safetensors headers without tensor data: the first 8 bytes give the JSON header's length.

Reading a header costs one small read per shard, whatever the shard's size, which is what makes
checking a trillion-parameter checkpoint before launch cheap.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "BF16": 2, "F16": 2, "I16": 2, "U16": 2,
               "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1}


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header without __metadata__, byte offset where tensor data starts)."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: not a safetensors file (header length {length})")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header, 8 + length


def tensor_span(path: Path, name: str) -> tuple[str, list[int], int, int]:
    """(dtype, shape, absolute start, absolute end) of one tensor's bytes in the file."""
    header, data_start = read_header(path)
    if name not in header:
        raise KeyError(name)
    entry = header[name]
    start, end = entry["data_offsets"]
    return entry["dtype"], entry["shape"], data_start + start, data_start + end
