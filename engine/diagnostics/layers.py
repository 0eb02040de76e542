"""Parameter name -> (layer index, module), for any decoder whose layers are numbered in its names.

"model.layers.3.self_attn.q_proj.weight" -> layer 3, module "self_attn.q_proj";
"transformer.h.0.attn.c_attn.weight" -> layer 0, module "attn.c_attn". The first dotted segment that
is a number is the layer index. Inside a layer, the weight matrices (2-D or more: linear, Conv1D,
fused expert tensors) count towards the layer's totals; 1-D tensors (norms, biases) do not and are
listed apart. Tensors outside numbered layers are sorted into embedding / head / norm / other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

LAYER_RE = re.compile(r"^(?P<prefix>(?:[^.]+\.)*?)(?P<index>\d+)\.(?P<rest>.+)$")

# Categories of tensors that are not a layer's weight matrix.
LAYER_VECTOR = "layer_vector"  # norm weights and biases inside a numbered layer
EMBEDDING, HEAD, NORM, OTHER = "embedding", "head", "norm", "other"


@dataclass(frozen=True)
class Placement:
    """Where one tensor belongs: a layer's module, or an unassigned category (layer is None)."""

    layer: int | None
    module: str | None
    category: str | None  # None for a layer's weight matrix


def layer_index(name: str) -> int | None:
    """The layer number in a tensor name, or None when the name has no numbered segment."""
    m = LAYER_RE.match(name)
    return int(m.group("index")) if m else None


def place(name: str, ndim: int) -> Placement:
    m = LAYER_RE.match(name)
    if m:
        rest = m.group("rest")
        if ndim >= 2:
            return Placement(int(m.group("index")), rest.removesuffix(".weight"), None)
        return Placement(None, None, LAYER_VECTOR)
    lowered = name.lower()
    if "embed" in lowered or re.search(r"(^|\.)w[tp]e\.", lowered):
        return Placement(None, None, EMBEDDING)
    if "lm_head" in lowered or lowered.startswith("head.") or ".head." in lowered:
        return Placement(None, None, HEAD)
    if ndim == 1 and ("norm" in lowered or "ln_f" in lowered):
        return Placement(None, None, NORM)
    return Placement(None, None, OTHER)


class Tally:
    """Accumulates one number per tensor into per-layer, per-module and unassigned totals."""

    def __init__(self):
        self.layers: dict[int, float] = {}
        self.modules: dict[int, dict[str, float]] = {}
        self.unassigned: dict[str, float] = {}
        self.unassigned_names: dict[str, list[str]] = {}

    def add(self, name: str, ndim: int, value: float) -> None:
        where = place(name, ndim)
        if where.layer is None:
            assert where.category is not None  # place() names the category of every unassigned tensor
            self.unassigned[where.category] = self.unassigned.get(where.category, 0.0) + value
            self.unassigned_names.setdefault(where.category, []).append(name)
            return
        assert where.module is not None  # and the module of every layer's tensor
        self.layers[where.layer] = self.layers.get(where.layer, 0.0) + value
        mods = self.modules.setdefault(where.layer, {})
        mods[where.module] = mods.get(where.module, 0.0) + value

    def as_dict(self) -> dict:
        """Plain, JSON-ready totals; layer keys become strings only when dumped to JSON."""
        return {
            "layers": dict(sorted(self.layers.items())),
            "modules": {n: self.modules[n] for n in sorted(self.modules)},
            "unassigned": self.unassigned,
            "unassigned_names": self.unassigned_names,
        }

