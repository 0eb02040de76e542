"""Step 4 (IMM, IIMM): theta_t = alpha * theta_base + (1 - alpha) * (theta_prev + DARE_p(theta_sft - theta_prev)),
streamed tensor by tensor into merged/."""
from __future__ import annotations

from pathlib import Path

from ..runstate.names import Stage
from .context import StageContext, StageResult, stage_seed


def merge(ctx: StageContext, t: int) -> StageResult:
    """merged/ with the run's alpha and drop rate; the DARE seed is stage_seed(merge.seed, t,
    "merge"), recorded in info["seed"]. Progress: tensors written."""
    m = ctx.cfg.merge
    out = ctx.paths.merged(t)
    return StageResult(out, merge_into(ctx, t, out, m.alpha, m.drop_rate, stage_seed(m.seed, t, Stage.MERGE)))


def merge_into(ctx: StageContext, t: int, out: Path, alpha: float, drop_rate: float, seed: int) -> dict:
    """Merge base, prev_t and SFT_t into the new folder `out` with the run's merge mode (sweeps use
    it too); returns the stage info."""
    from ..merge.stream import merge_checkpoints
    from ..models.loading import clear_stale

    m = ctx.cfg.merge
    clear_stale(out)
    device = ctx.device_and_dtype()[0] if m.device == "auto" else m.device
    info = {"alpha": alpha, "drop_rate": drop_rate, "seed": seed, "mode": m.mode}
    layer_scale = None
    if m.mode == "importance":
        from ..diagnostics import iimm_layer_scales, layer_scale_fn
        from .analyze import layer_importance

        scales = iimm_layer_scales(layer_importance(ctx, t).layers)
        layer_scale = layer_scale_fn(scales)
        info["layer_scales"] = {str(n): round(v, 4) for n, v in sorted(scales.items())}
    merge_checkpoints(base=ctx.base_path, prev=ctx.prev_path(t), sft=str(ctx.paths.sft(t)), out=str(out),
                      alpha=alpha, drop_rate=drop_rate, seed=seed, device=device, layer_scale=layer_scale,
                      progress=ctx.progress)
    return info
