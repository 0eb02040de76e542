"""Lazy, tensor-by-tensor access to a Hugging Face checkpoint folder's safetensors shards.

Nothing here loads a whole model: `CheckpointReader.get(name)` reads one tensor from the shard
that holds it. Merge, weight-change diagnostics and sweeps all stream through this reader.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from .errors import UserError

INDEX_NAME = "model.safetensors.index.json"


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

    def names(self) -> list[str]:
        return list(self._where)

    def shard_files(self) -> list[Path]:
        return sorted(set(self._where.values()))

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

    def shape(self, name: str) -> list[int]:
        return list(self._handle(name).get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        """safetensors dtype string of `name`: "F32", "BF16", "F16", ..."""
        return self._handle(name).get_slice(name).get_dtype()

    def config(self) -> dict:
        path = self.folder / "config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
