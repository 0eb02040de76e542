"""Per-layer weight change sum_k ||W_before - W_after||_F between two checkpoint folders.

Streams one tensor pair at a time through `CheckpointReader`, in shard order, and closes a shard's
memory map when moving past it, so at most one shard of each checkpoint is mapped at a time and
never both full models are in memory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..checkpoint import CheckpointReader, shard_map
from ..errors import UserError
from .layers import Tally

CHUNK_ELEMENTS = 1 << 22  # float32 temporaries of 16 MB per chunk, whatever the tensor size


@dataclass
class WeightChange:
    layers: dict[int, float]  # sum of Frobenius norms of the layer's weight-matrix differences
    modules: dict[int, dict[str, float]]
    pct: dict[int, float]  # layer share of the total over layers, in percent
    unassigned: dict[str, float]
    unassigned_names: dict[str, list[str]]
    only_in_before: list[str]
    only_in_after: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def frobenius_distance(a, b, chunk_elements: int = CHUNK_ELEMENTS) -> float:
    """||a - b||_F computed in float32 chunks along the first dimension, summed in float64."""
    import torch

    if a.ndim == 0:
        return abs(float(a) - float(b))
    rows = max(1, chunk_elements // max(1, a[0].numel()))
    squares = 0.0
    for start in range(0, a.shape[0], rows):
        diff = a[start : start + rows].float() - b[start : start + rows].float()
        squares += torch.linalg.vector_norm(diff, dtype=torch.float64).item() ** 2
    return squares**0.5


def weight_change(before_dir, after_dir) -> WeightChange:
    where_before, where_after = shard_map(before_dir), shard_map(after_dir)
    common = sorted(set(where_before) & set(where_after), key=lambda n: (where_before[n], where_after[n], n))
    tally = Tally()
    with CheckpointReader(before_dir) as before, CheckpointReader(after_dir) as after:
        open_before = open_after = None
        for name in common:
            if where_before[name] != open_before:
                before.close()
                open_before = where_before[name]
            if where_after[name] != open_after:
                after.close()
                open_after = where_after[name]
            a, b = before.get(name), after.get(name)
            if a.shape != b.shape:
                raise UserError(f"{name}: shape {list(a.shape)} in {before_dir}, {list(b.shape)} in {after_dir}")
            tally.add(name, a.ndim, frobenius_distance(a, b))
            del a, b
    total = sum(tally.layers.values())
    pct = {n: (100.0 * v / total if total else 0.0) for n, v in sorted(tally.layers.items())}
    return WeightChange(**tally.as_dict(), pct=pct,
                        only_in_before=sorted(set(where_before) - set(where_after)),
                        only_in_after=sorted(set(where_after) - set(where_before)))
