"""The superficiality verdict: does the weight change land in the layers that matter?

Spearman rank correlation between layer importance and layer weight change (average ranks for
ties), and the top quarter of layers by each. A correlation below the threshold (negative or low)
is the "superficial" signature: the largest updates go to the layers that matter least.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

SUPERFICIAL_BELOW = 0.3


@dataclass
class Verdict:
    spearman: float | None  # None when either side is constant (correlation undefined)
    label: str  # "superficial", "aligned" or "undefined"
    threshold: float
    top_importance: list[int]  # top quarter of layers by importance
    top_change: list[int]  # top quarter of layers by weight change
    top_overlap: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def average_ranks(values: list[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation of the average ranks of x and y."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} vs {len(y)} values")
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else None


def top_quarter(per_layer: dict[int, float]) -> list[int]:
    """The ceil(N/4) layers with the largest values (lower layer first among equals), ascending."""
    k = math.ceil(len(per_layer) / 4)
    ranked = sorted(per_layer, key=lambda n: (-per_layer[n], n))
    return sorted(ranked[:k])


def verdict(importance: dict[int, float], change: dict[int, float],
            threshold: float = SUPERFICIAL_BELOW) -> Verdict:
    if set(importance) != set(change):
        raise ValueError(f"layers differ: importance {sorted(importance)}, weight change {sorted(change)}")
    layers = sorted(importance)
    r = spearman([importance[n] for n in layers], [change[n] for n in layers]) if len(layers) > 1 else None
    label = "undefined" if r is None else ("superficial" if r < threshold else "aligned")
    top_i, top_c = top_quarter(importance), top_quarter(change)
    return Verdict(r, label, threshold, top_i, top_c, sorted(set(top_i) & set(top_c)))
