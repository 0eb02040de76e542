"""The stages of the method (Figure 5), one module each: every stage is a function
`(ctx: StageContext, t: int) -> StageResult` that writes its artifacts to temporary paths and
renames them into place; the driver (engine.driver) marks it done afterwards.

Modules import torch / transformers inside functions, so importing this package stays light."""
from __future__ import annotations

from typing import Callable

from ..runstate.names import Stage
from .analyze import analyze
from .build import build
from .context import StageContext, StageResult, stage_seed
from .evaluate import evaluate
from .filter import filter
from .generate import generate
from .merge import merge
from .sft import sft

STAGES: dict[Stage, Callable[[StageContext, int], StageResult]] = {
    Stage.BUILD: build,
    Stage.GENERATE: generate,
    Stage.FILTER: filter,
    Stage.SFT: sft,
    Stage.MERGE: merge,
    Stage.EVAL: evaluate,
    Stage.ANALYZE: analyze,
}

__all__ = ["STAGES", "StageContext", "StageResult", "stage_seed"]
