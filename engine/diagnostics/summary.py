"""Importance + weight change + verdict for two checkpoints, as one JSON-ready dict."""
from __future__ import annotations

from .data import load_pairs
from .importance import Importance, importance
from .verdict import SUPERFICIAL_BELOW, verdict
from .weight_change import WeightChange, weight_change


def percent(per_layer: dict[int, float]) -> dict[int, float]:
    total = sum(per_layer.values())
    return {n: (100.0 * v / total if total else 0.0) for n, v in per_layer.items()}


def layer_rows(change: WeightChange, imp: Importance | None) -> list[dict]:
    imp_pct = percent(imp.layers) if imp else {}
    rows = []
    for n in sorted(set(change.layers) | set(imp.layers if imp else ())):
        change_mods = change.modules.get(n, {})
        imp_mods = imp.modules.get(n, {}) if imp else {}
        rows.append({
            "layer": n,
            "importance": imp.layers.get(n) if imp else None,
            "importance_pct": imp_pct.get(n),
            "weight_change": change.layers.get(n),
            "weight_change_pct": change.pct.get(n),
            "modules": {
                m: {"importance": imp_mods.get(m), "weight_change": change_mods.get(m)}
                for m in sorted(set(change_mods) | set(imp_mods))
            },
        })
    return rows


def build_report(change: WeightChange, imp: Importance | None, threshold: float = SUPERFICIAL_BELOW) -> dict:
    """The `imm analyze` JSON. Without importance, only the weight-change fields are filled."""
    v = verdict(imp.layers, change.layers, threshold) if imp else None
    return {
        "layers": layer_rows(change, imp),
        "spearman": v.spearman if v else None,
        "verdict": v.label if v else "no importance data",
        "threshold": threshold,
        "top_quarter": {
            "importance": v.top_importance if v else None,
            "weight_change": v.top_change if v else None,
            "overlap": v.top_overlap if v else None,
        },
        "unassigned": {
            "importance": imp.unassigned if imp else None,
            "weight_change": change.unassigned,
            "names": {**change.unassigned_names, **(imp.unassigned_names if imp else {})},
        },
        "tied": imp.tied if imp else None,
        "only_in_before": change.only_in_before,
        "only_in_after": change.only_in_after,
        "importance_set": {"loss": imp.loss, "n_examples": imp.n_examples, "n_tokens": imp.n_tokens} if imp else None,
    }


def analyze(before_dir, after_dir, data: str | None = None, *, limit: int | None = 256, batch_size: int = 8,
            max_length: int = 512, device: str | None = None, threshold: float = SUPERFICIAL_BELOW) -> dict:
    """Importance on `before_dir` over `data` (task, task:split or JSONL), weight change before -> after."""
    pairs = load_pairs(data, limit) if data else None  # bad --data fails before any heavy work
    change = weight_change(before_dir, after_dir)
    imp = importance(before_dir, pairs, batch_size=batch_size, max_length=max_length, device=device) if pairs else None
    report = build_report(change, imp, threshold)
    return {"before": str(before_dir), "after": str(after_dir), "data": data, **report}
