"""Per-layer weight change sum_k ||W_before - W_after||_F between two checkpoint folders.

Streams one tensor pair at a time through `CheckpointReader` and unmaps the shards after each
pair, so memory holds two tensors (and their float32 difference, in chunks), never both models.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..merge.checkpoint import CheckpointReader
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


def weight_change(before_dir, after_dir, progress=None) -> WeightChange:
    """`progress` (a ProgressReporter) hears each tensor pair compared."""
    tally = Tally()
    with CheckpointReader(before_dir) as before, CheckpointReader(after_dir) as after:
        names_before, names_after = set(before.names()), set(after.names())
        common = sorted(names_before & names_after)
        if progress is not None:
            progress.start(len(common), "tensors")
        for name in common:
            a, b = before.get(name), after.get(name)
            # Drop the shard maps after each tensor: pages read through a map stay resident (and count
            # in RSS) until it is unmapped, which would add up to both whole checkpoints.
            before.close()
            after.close()
            if a.shape != b.shape:
                raise UserError(f"{name}: shape {list(a.shape)} in {before_dir}, {list(b.shape)} in {after_dir}")
            tally.add(name, a.ndim, frobenius_distance(a, b))
            if progress is not None:
                progress.advance()
    total = sum(tally.layers.values())
    pct = {n: (100.0 * v / total if total else 0.0) for n, v in sorted(tally.layers.items())}
    return WeightChange(**tally.as_dict(), pct=pct,
                        only_in_before=sorted(names_before - names_after),
                        only_in_after=sorted(names_after - names_before))
