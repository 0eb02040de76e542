"""Step 3: fine-tune the model iteration t starts from on the kept samples (loss on the
response only), with the hf or the deepspeed backend."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from ..config import RunConfig, SFTConfig, derived_grad_accum, sft_backend
from ..errors import UserError
from ..jsonl import read_records
from ..runstate.paths import RunPaths
from .context import StageContext, StageResult
from .resumable import digest, model_stamp
from ..domain import Method, SFTBackend
from ..models.placement import visible_gpus


def training_pairs(cfg: RunConfig, paths: RunPaths, t: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, response) of this iteration's kept data, plus earlier iterations' as the method
    says: all of it (accumulate) or a share drawn with `seed` (mixture)."""
    current = read_records(paths.kept(t), "kept samples")
    earlier = [r for s in range(1, t) for r in read_records(paths.kept(s), "kept samples")]
    if cfg.method == Method.ACCUMULATE:
        data = earlier + current
    elif cfg.method == Method.MIXTURE and earlier:
        n_mix = min(len(earlier), round(cfg.mixture.share * len(current)))
        data = current + random.Random(seed).sample(earlier, n_mix)
    else:
        data = current
    return [(r["prompt"], r["response"]) for r in data]


def training_gpus(cfg: SFTConfig) -> int:
    """GPUs SFT runs on: 1 (hf), the slots of sft.hosts, sft.num_gpus, or every visible one
    (deepspeed, num_gpus 0)."""
    if sft_backend(cfg, len(visible_gpus())) != SFTBackend.DEEPSPEED:
        return 1
    if cfg.hosts:
        from ..models.ds_runner import host_gpus

        return host_gpus(cfg.hosts, cfg.num_gpus)
    return cfg.num_gpus or max(1, len(visible_gpus()))


def training_checkpoints(ctx: StageContext, t: int, pairs, cfg: SFTConfig, device: str, dtype):
    """The hf backend's training checkpoints of iteration t, fingerprinted with what training
    depends on (data, settings but the checkpoint interval, starting model, seed, device, dtype)."""
    from ..train.checkpointing import TrainingCheckpoints

    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if not k.startswith("checkpoint_")}
    fingerprint = digest([pairs, settings, model_stamp(ctx.sft_init_path(t)), ctx.seed, device, str(dtype)])
    return TrainingCheckpoints(ctx.paths.sft_checkpoint(t), cfg.checkpoint_every, cfg.checkpoint_minutes, fingerprint,
                               ctx.stop_requested, ctx.safe_point, ctx.log, before_save=ctx.steps.flush)


def sft(ctx: StageContext, t: int) -> StageResult:
    """sft/: the fine-tuned checkpoint (progress: optimizer steps, with loss and tokens/s). The hf
    backend saves training checkpoints and continues from the last one after a kill or a stop, and
    records every optimizer step (ctx.steps: the curves; the deepspeed worker records none yet)."""
    from ..models.loading import clear_stale

    backend = sft_backend(ctx.cfg.sft, len(visible_gpus()))
    pairs = training_pairs(ctx.cfg, ctx.paths, t, ctx.seed)
    if not pairs:
        raise UserError(f"iteration {t}: the filter kept no correct samples to fine-tune on "
                        "(raise generation.k or add temperatures, or start from a stronger model)")
    out = ctx.paths.sft(t)
    clear_stale(out)
    device, dtype = ctx.device_and_dtype()
    gpus = training_gpus(ctx.cfg.sft)
    cfg = dataclasses.replace(ctx.cfg.sft, grad_accum=derived_grad_accum(ctx.cfg.sft, gpus))
    ctx.log(f"[iter {t}] sft: backend {backend}" + (f" (ZeRO stage {cfg.zero_stage})" if backend == SFTBackend.DEEPSPEED else "")
            + f"; per-device batch {cfg.batch_size} x grad-accum {cfg.grad_accum} x {gpus} GPU(s) = "
            f"{cfg.batch_size * cfg.grad_accum * gpus} per optimizer step")
    init = Path(ctx.sft_init_path(t))
    trust = ctx.cfg.model.trust_remote_code
    if backend == SFTBackend.DEEPSPEED:  # no training checkpoints: a killed DeepSpeed SFT starts over
        from ..train.deepspeed_launcher import train as train_deepspeed

        info = train_deepspeed(init, pairs, cfg, out, device, dtype, ctx.seed, ctx.log, ctx.progress, trust_remote_code=trust)
    else:
        from ..train.sft import train

        checkpoints = training_checkpoints(ctx, t, pairs, cfg, device, dtype)
        info = train(init, pairs, cfg, out, device, dtype, ctx.seed, ctx.log, ctx.progress, trust_remote_code=trust,
                     checkpoints=checkpoints, recorder=ctx.steps)
        checkpoints.remove()
    return StageResult(out, {**info, "backend": backend, "grad_accum": cfg.grad_accum, "global_batch": cfg.batch_size * cfg.grad_accum * gpus})
