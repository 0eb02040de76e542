"""Supervised fine-tuning on kept samples: loss on the response tokens only, AdamW, warm-up,
then cosine or linear decay (engine.train.schedule), gradient clipping at sft.max_grad_norm and
the interventions gradient decay and weight masking (engine.train.interventions). Backend `hf`
runs plain PyTorch on the CPU or one GPU.

The loss of an optimizer step is the mean over the response tokens of all its micro-batches
(engine.train.loss sums each micro-batch's token losses; the step divides by the step's count,
known on the CPU before the step starts). So the examples of a step may be ordered by length
inside the step (engine.train.loss.optimizer_step_batches) without changing the update, and a
micro-batch with a long response weighs by its tokens, not as one micro-batch among grad_accum.
With grad_accum 1 (the tiny default) this is the model's own loss: the default's metrics are the
same as before (45.3 -> SFT1 56.3 -> Merge1 54.3 % in-domain on 2 CPU cores, 2026-11-27).
Batches are right-padded and run without an attention mask: under causal attention no real token
sees the padding after it, so the masked and unmasked results agree at every position the loss
reads, and SDPA takes its causal (flash) kernel.

On a GPU: fp32 master weights, the forward under bf16 autocast, the head's projection and
softmax in chunks (bf16 matmuls, fp32 statistics), fused AdamW, no host sync before the end of
an optimizer step; sft.compile and sft.grad_checkpointing are opt-in, and so are bf16 weights
with fp32 masters in the optimizer (sft.precision, engine.train.master_weights); liger-kernel's
fused kernels are taken when installed (sft.kernels, engine.train.kernels).
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable

from ..config import SFTConfig
from ..runstate.steps import StepRecorder
from .checkpointing import Position, TrainingCheckpoints
from .interventions import WeightMask, param_groups
from .kernels import choose, liger_installed, patched
from .loss import accumulate_step, optimizer_step_batches, response_loss_sum
from .master_weights import master_adamw
from .schedule import epoch_seed, lr_scheduler, optimizer_step, optimizer_steps, warmup_steps
from .textdata import encode_pairs


def train(init_path: Path, pairs: list[tuple[str, str]], cfg: SFTConfig, out: Path, device: str,
          save_dtype, seed: int, log: Callable[[str], None] = print, progress=None,
          trust_remote_code: bool = False, checkpoints: TrainingCheckpoints | None = None,
          recorder: StepRecorder | None = None) -> dict:
    """Fine-tune the model at init_path on (prompt, response) pairs; save it to `out` atomically.
    `checkpoints` saves training checkpoints and resumes from the last one; `recorder` records every
    optimizer step (the curves)."""
    import torch

    from ..models.loading import load_model, load_tokenizer, save_checkpoint

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(init_path, padding_side="right", trust_remote_code=trust_remote_code)
    model = load_model(init_path, device, torch.float32, trust_remote_code)
    items = encode_pairs(tokenizer, pairs, cfg.max_length)
    info = fit(model, items, tokenizer.pad_token_id, cfg, device, seed, log, progress, checkpoints=checkpoints, recorder=recorder)
    save_checkpoint(model, tokenizer, out, dtype=save_dtype)
    return info


def fit(model, items, pad_id: int, cfg: SFTConfig, device: str, seed: int,
        log: Callable[[str], None] = print, progress=None, max_steps: int = 0,
        checkpoints: TrainingCheckpoints | None = None, recorder: StepRecorder | None = None) -> dict:
    """Train `model` (fp32, on `device`) in place on encoded items. `progress` (a ProgressReporter)
    hears every optimizer step with its loss and tokens. max_steps > 0 stops early (benchmarks).
    `checkpoints` (engine.train.checkpointing) restores the last training checkpoint first and
    hears every optimizer step; `recorder` (engine.runstate.steps) records each step's loss, lr,
    gradient norm and tokens, and is flushed before each checkpoint."""
    model.train()
    model.config.use_cache = False
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    kernels = choose(cfg.kernels, device, model.config.model_type, liger_installed())
    if kernels != "eager":
        log(f"sft: {kernels} kernels")
    with patched(model, kernels) as linear_ce:
        if cfg.compile:
            model.get_decoder().compile()
        return _fit(model, items, pad_id, cfg, device, seed, log, progress, max_steps, checkpoints, recorder, linear_ce)


def _fit(model, items, pad_id, cfg, device, seed, log, progress, max_steps, checkpoints, recorder, linear_ce) -> dict:
    import torch

    total = optimizer_steps(len(items), cfg)
    warmup = warmup_steps(cfg.warmup, total)
    on_gpu = device == "cuda"
    groups = param_groups(model, cfg.lr, cfg.grad_decay)
    adamw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, fused=on_gpu)
    opt = master_adamw(model, groups, **adamw) if cfg.precision == "bf16" else torch.optim.AdamW(groups, **adamw)
    grad_mask = WeightMask(cfg.mask_top_p) if cfg.mask_top_p < 1 else None
    sched = lr_scheduler(opt, total, warmup, cfg.schedule)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu)
    loss_of = functools.partial(response_loss_sum, model, compute_dtype=torch.bfloat16 if on_gpu else None,
                                linear_ce=linear_ce)
    at = checkpoints.restore(model, opt, sched, grad_mask) if checkpoints is not None else Position()
    if progress is not None:  # resumed from a training checkpoint: the bar starts where it was
        progress.start(total, "steps", restored=at.step)
    if recorder is not None:
        recorder.begin(at.step)

    # the losses of the steps before the checkpoint: of finished epochs, and of the epoch at hand
    step, step_losses = at.step, at.losses[: len(at.losses) - at.batch]
    started = time.perf_counter()
    for epoch in range(at.epoch, cfg.epochs):
        epoch_losses = [torch.tensor(x, device=device) for x in at.losses[len(step_losses):]] if epoch == at.epoch else []
        steps = optimizer_step_batches(items, cfg.batch_size, cfg.grad_accum, pad_id, epoch_seed(seed, epoch))
        for b, batch in enumerate(steps):
            if epoch == at.epoch and b < at.batch:
                continue  # done before the checkpoint this run resumed from
            loss_sum = accumulate_step(loss_of, batch, device, autocast)
            lr = max(group["lr"] for group in opt.param_groups)  # the step's (peak group's) learning rate
            grad_norm = optimizer_step(model, opt, sched, cfg.max_grad_norm, grad_mask)
            step += 1
            epoch_losses.append(loss_sum / max(1, batch.targets))
            if progress is not None:
                progress.update(step, loss=epoch_losses[-1].item(), tokens=batch.tokens)  # the one sync a step
            if recorder is not None:
                recorder.record(step, epoch_losses[-1], lr, grad_norm, batch.tokens)
            if checkpoints is not None:
                checkpoints.after_step(step, total, lambda: Position(epoch, b + 1, step, step_losses + [float(x) for x in epoch_losses]),
                                       model, opt, sched, grad_mask)
            if step == max_steps:
                break
        step_losses += [float(x) for x in torch.stack(epoch_losses).tolist()]
        log(f"sft epoch {epoch + 1}/{cfg.epochs}: mean loss {sum(step_losses[-len(epoch_losses):]) / len(epoch_losses):.4f}")
        if step == max_steps:
            break
    seconds = time.perf_counter() - started
    if cfg.precision == "bf16":
        opt.finish()
    return {"examples": len(items), "optimizer_steps": step, "final_loss": step_losses[-1] if step_losses else None,
            "train_s": round(seconds, 1)}
