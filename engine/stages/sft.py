"""Step 3: fine-tune the model iteration t starts from on the kept samples (loss on the
response only), with the hf or the deepspeed backend."""
from __future__ import annotations

import random
from pathlib import Path

from ..config import RunConfig
from ..errors import UserError
from ..jsonl import read_records
from ..runstate.paths import RunPaths
from .context import StageContext, StageResult


def training_pairs(cfg: RunConfig, paths: RunPaths, t: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, response) of this iteration's kept data, plus earlier iterations' as the method
    says: all of it (accumulate) or a share drawn with `seed` (mixture)."""
    current = read_records(paths.kept(t), "kept samples")
    earlier = [r for s in range(1, t) for r in read_records(paths.kept(s), "kept samples")]
    if cfg.method == "accumulate":
        data = earlier + current
    elif cfg.method == "mixture" and earlier:
        n_mix = min(len(earlier), round(cfg.mixture.share * len(current)))
        data = current + random.Random(seed).sample(earlier, n_mix)
    else:
        data = current
    return [(r["prompt"], r["response"]) for r in data]


def sft(ctx: StageContext, t: int) -> StageResult:
    """sft/: the fine-tuned checkpoint (progress: optimizer steps, with loss and tokens/s)."""
    from ..models.loading import clear_stale

    if ctx.cfg.sft.backend == "deepspeed":
        from ..train.deepspeed_launcher import train
    else:
        from ..train.sft import train

    pairs = training_pairs(ctx.cfg, ctx.paths, t, ctx.seed)
    if not pairs:
        raise UserError(f"iteration {t}: the filter kept no correct samples to fine-tune on "
                        "(raise generation.k or add temperatures, or start from a stronger model)")
    out = ctx.paths.sft(t)
    clear_stale(out)
    device, dtype = ctx.device_and_dtype()
    info = train(Path(ctx.prev_path(t)), pairs, ctx.cfg.sft, out, device, dtype, ctx.seed, ctx.log, ctx.progress)
    return StageResult(out, info)
