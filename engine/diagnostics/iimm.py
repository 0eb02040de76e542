"""IIMM: each layer's merge update scaled by N * I_n / sum(I), from the layer importance."""
from __future__ import annotations

from typing import Callable

from .layers import layer_index


def iimm_layer_scales(importance_per_layer: dict[int, float]) -> dict[int, float]:
    """{layer: N * I_n / sum(I)}; the scales average to 1, so the total update size is kept."""
    total = sum(importance_per_layer.values())
    if not importance_per_layer or total <= 0:
        raise ValueError(f"IIMM needs a positive total layer importance; got {importance_per_layer!r}")
    n = len(importance_per_layer)
    return {layer: n * value / total for layer, value in importance_per_layer.items()}


def layer_scale_fn(scales: dict[int, float]) -> Callable[[str], float]:
    """Tensor name -> its layer's scale (norms and biases of layer n included); 1.0 outside layers."""

    def scale(name: str) -> float:
        n = layer_index(name)
        if n is None:
            return 1.0
        if n not in scales:
            raise KeyError(f"{name}: layer {n} has no IIMM scale (scaled layers: {sorted(scales)})")
        return scales[n]

    return scale
