"""Iteration 0, before anything else: the base model's folder, made once and cached in the home:
the embedded default's model built offline, or a GGUF file converted."""
from __future__ import annotations

from ..domain import BUILTIN_PREFIX, ModelSource
from .context import StageContext, StageResult


def build(ctx: StageContext, t: int) -> StageResult:
    """Pre-train the builtin base model (progress: pre-training steps) or convert the GGUF file,
    or find the result cached."""
    path = ctx.cfg.model.path
    if ModelSource.of(path) is ModelSource.GGUF:
        from ..models.gguf import ensure_gguf

        return StageResult(ensure_gguf(ctx.home, path, ctx.log))
    from ..train.builtin import ensure_builtin

    return StageResult(ensure_builtin(ctx.home, path.removeprefix(BUILTIN_PREFIX), ctx.log, ctx.progress))
