"""Lazy, tensor-by-tensor access to a Hugging Face checkpoint folder's safetensors shards.

Nothing here loads a whole model: `CheckpointReader.get(name)` reads one tensor from the shard
that holds it. Merge, weight-change diagnostics and sweeps all stream through this reader.
`CheckpointReader.location(name)` gives a tensor's byte range for readers that read it in pieces
with plain file reads (no memory map, so the pages read never count towards the process's RSS),
and `ShardWriter` writes a shard tensor by tensor from a header planned in advance.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from ..errors import UserError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class TensorLocation:
    """Where a tensor's bytes lie: `nbytes` bytes from `offset` in `path` (row-major)."""

    path: Path
    offset: int
    nbytes: int
    dtype: str  # safetensors dtype string
    shape: tuple[int, ...]


def read_header(path: Path) -> tuple[int, dict]:
    """(offset of the data section, header dict) of one safetensors file."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return 8 + size, json.loads(f.read(size))


def shard_map(folder: Path) -> dict[str, Path]:
    """Tensor name -> shard file, from the index when there is one, else from the single file."""
    folder = Path(folder)
    index = folder / INDEX_NAME
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / fname for name, fname in weight_map.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder}: no safetensors checkpoint here (expected {INDEX_NAME} or *.safetensors)")
    out: dict[str, Path] = {}
    for f in files:
        with safe_open(f, framework="pt") as handle:
            for name in handle.keys():
                out[name] = f
    return out


class CheckpointReader:
    """Read tensors one at a time from a checkpoint folder; open shard handles are cached."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: checkpoint folder does not exist")
        self._where = shard_map(self.folder)
        self._handles: dict[Path, object] = {}
        self._headers: dict[Path, tuple[int, dict]] = {}

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def _handle(self, name: str):
        path = self._where[name]
        if path not in self._handles:
            self._handles[path] = safe_open(path, framework="pt")
        return self._handles[path]

    def get(self, name: str):
        """The tensor `name` as stored (dtype kept)."""
        return self._handle(name).get_tensor(name)

    def dtype(self, name: str) -> str:
        """safetensors dtype string of `name`: "F32", "BF16", "F16", ..."""
        return self._handle(name).get_slice(name).get_dtype()

    def location(self, name: str) -> TensorLocation:
        path = self._where[name]
        if path not in self._headers:
            self._headers[path] = read_header(path)
        data_start, header = self._headers[path]
        entry = header[name]
        start, end = entry["data_offsets"]
        return TensorLocation(path, data_start + start, end - start, entry["dtype"], tuple(entry["shape"]))

    def config(self) -> dict:
        path = self.folder / "config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tensor_nbytes(dtype: str, shape) -> int:
    n = ITEMSIZE[dtype]
    for d in shape:
        n *= d
    return n


class ShardWriter:
    """Write one safetensors file tensor by tensor, in the order planned when it was opened.

    `entries` is [(name, safetensors dtype, shape)]; the header is written first, then `write(data)`
    appends raw bytes (any buffer; a tensor may come in several pieces), in the planned order.
    Use as a context manager: leaving it closes the file and, unless an exception is on its way,
    checks that every planned byte was written.
    """

    def __init__(self, path: Path, entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict | None = None):
        header: dict = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        for name, dtype, shape in entries:
            nbytes = tensor_nbytes(dtype, shape)
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # data section aligned to 8 bytes, as safetensors itself does
        self.path, self.data_bytes = Path(path), offset
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._written = 0
        self._put(struct.pack("<Q", len(blob)) + blob)

    def _put(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self._fd, view):]

    def write(self, data) -> None:
        nbytes = memoryview(data).nbytes
        if self._written + nbytes > self.data_bytes:
            raise ValueError(f"{self.path}: more bytes written than planned ({self.data_bytes})")
        self._put(data)
        self._written += nbytes

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        os.close(self._fd)
        if exc_type is None and self._written != self.data_bytes:
            raise ValueError(f"{self.path}: wrote {self._written} of {self.data_bytes} planned bytes")
