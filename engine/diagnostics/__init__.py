"""Layer diagnostics: importance vs weight change, the superficiality verdict, IIMM layer scales.

Every entry point takes checkpoint folders (and data) and returns dataclasses with `to_dict()` or
plain dicts, ready for JSON and SQLite rows. torch / transformers are imported inside functions.
"""
from .data import load_pairs, task_pairs
from .iimm import iimm_layer_scales, layer_scale_fn
from .importance import Importance, importance, importance_of_model
from .layers import layer_index, place
from .summary import analyze, build_report
from .verdict import Verdict, spearman, verdict
from .weight_change import WeightChange, weight_change

__all__ = [
    "Importance", "Verdict", "WeightChange", "analyze", "build_report", "iimm_layer_scales", "importance",
    "importance_of_model", "layer_index", "layer_scale_fn", "load_pairs", "place", "task_pairs", "spearman", "verdict",
    "weight_change",
]
