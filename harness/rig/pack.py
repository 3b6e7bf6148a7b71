"""Checkpoints deduplicated by tensor and compressed, to travel beside the SGLang bundle (64 MiB per call).

The variants share most tensors (an export differs from its sibling in a config entry or one layer), so
each distinct tensor is stored once. Unpacking rewrites byte-identical safetensors headers and data.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import struct
import tarfile
from pathlib import Path

from harness.loading.safetensors import read_header

INDEX = "index.json"


def _safetensors_entries(path: Path) -> tuple[list[dict], dict[str, bytes]]:
    """(entries in file order, blobs by digest) of one safetensors file."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    metadata = header.pop("__metadata__", None)
    data = raw[8 + length:]
    entries, blobs = [], {}
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        start, end = entry["data_offsets"]
        blob = data[start:end]
        digest = hashlib.sha256(blob).hexdigest()
        blobs[digest] = blob
        entries.append({"name": name, "dtype": entry["dtype"], "shape": entry["shape"], "blob": digest})
    return [{"__metadata__": metadata}, *entries], blobs


def pack(root: Path, target: Path) -> dict[str, int]:
    """Every checkpoint directory under `root` (config.json inside) into one .tar.xz at `target`."""
    index: dict[str, dict] = {}
    blobs: dict[str, bytes] = {}
    for config in sorted(root.rglob("config.json")):
        checkpoint = config.parent
        files: dict[str, object] = {}
        for path in sorted(checkpoint.iterdir()):
            if path.suffix == ".safetensors":
                entries, found = _safetensors_entries(path)
                blobs.update(found)
                files[path.name] = {"safetensors": entries}
            elif path.is_file():
                files[path.name] = {"text": path.read_text()}
        index[str(checkpoint.relative_to(root))] = files
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add(archive, INDEX, json.dumps(index, sort_keys=True).encode())
        for digest, blob in sorted(blobs.items()):
            _add(archive, f"blobs/{digest}", blob)
    target.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    return {"checkpoints": len(index), "tensors": len(blobs), "raw_bytes": len(buffer.getvalue()),
            "packed_bytes": target.stat().st_size}


def _add(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def _member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:  # a directory or link where a file was packed: not a pack this module wrote
        raise ValueError(f"{member.name}: not a regular file in the pack")
    return handle.read()


def unpack(source: Path, root: Path) -> list[Path]:
    """The checkpoints of a pack, written under `root`; returns their directories."""
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(source.read_bytes())), mode="r") as archive:
        members = {member.name: member for member in archive.getmembers()}
        index = json.loads(_member_bytes(archive, members[INDEX]))
        blob = {name.removeprefix("blobs/"): _member_bytes(archive, member)
                for name, member in members.items() if name.startswith("blobs/")}
    written = []
    for relative, files in index.items():
        checkpoint = root / relative
        checkpoint.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            if "text" in content:
                (checkpoint / name).write_text(content["text"])
            else:
                _write_safetensors(checkpoint / name, content["safetensors"], blob)
        written.append(checkpoint)
    return written


def _write_safetensors(path: Path, entries: list[dict], blobs: dict[str, bytes]) -> None:
    metadata, *tensors = entries
    header: dict[str, object] = {}
    if metadata["__metadata__"] is not None:
        header["__metadata__"] = metadata["__metadata__"]
    offset, chunks = 0, []
    for entry in tensors:
        payload = blobs[entry["blob"]]
        header[entry["name"]] = {"dtype": entry["dtype"], "shape": entry["shape"],
                                 "data_offsets": [offset, offset + len(payload)]}
        chunks.append(payload)
        offset += len(payload)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for chunk in chunks:
            handle.write(chunk)


def headers(root: Path) -> dict[str, dict]:
    """config.json and safetensors headers (no data) of every checkpoint under `root`: what the CPU tests
    replay preflight on."""
    found = {}
    for config in sorted(root.rglob("config.json")):
        checkpoint = config.parent
        tensors = {}
        for path in sorted(checkpoint.glob("*.safetensors")):
            header, _ = read_header(path)
            tensors.update({name: {"dtype": e["dtype"], "shape": e["shape"]} for name, e in header.items()})
        found[str(checkpoint.relative_to(root))] = {"config": json.loads(config.read_text()), "tensors": tensors}
    return found
