"""Iteration 0, before anything else: the embedded default's base model, built offline once."""
from __future__ import annotations

from ..config import BUILTIN_PREFIX
from .context import StageContext, StageResult


def build(ctx: StageContext, t: int) -> StageResult:
    """Pre-train the builtin base model (progress: pre-training steps), or find it cached."""
    from ..models.builtin import ensure_builtin

    name = ctx.cfg.model.path.removeprefix(BUILTIN_PREFIX)
    return StageResult(ensure_builtin(ctx.home, name, ctx.log, ctx.progress))
