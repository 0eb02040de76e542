"""Supervised fine-tuning on kept samples: loss on the response tokens only, AdamW, warm-up,
then cosine or linear decay (engine.train.schedule), gradient clipping at sft.max_grad_norm and
the interventions gradient decay and weight masking (engine.train.interventions). Backend `hf` runs plain PyTorch on the CPU or
one GPU."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from ..config import SFTConfig
from .checkpointing import Position, TrainingCheckpoints
from .interventions import WeightMask, param_groups
from .schedule import epoch_seed, lr_scheduler, optimizer_step, optimizer_steps, warmup_steps
from .textdata import batches, encode_pairs


def train(init_path: Path, pairs: list[tuple[str, str]], cfg: SFTConfig, out: Path, device: str,
          save_dtype, seed: int, log: Callable[[str], None] = print, progress=None,
          checkpoints: TrainingCheckpoints | None = None) -> dict:
    """Fine-tune the model at init_path on (prompt, response) pairs; save it to `out` atomically.
    Master weights are fp32; on a GPU the forward runs under bf16 autocast. `progress` (a
    ProgressReporter) hears every optimizer step with its mean micro-batch loss and tokens.
    `checkpoints` saves training checkpoints and resumes from the last one."""
    import torch

    from ..models.loading import load_model, load_tokenizer, save_checkpoint

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(init_path, padding_side="right")
    model = load_model(init_path, device, torch.float32).train()
    items = encode_pairs(tokenizer, pairs, cfg.max_length)
    total = optimizer_steps(len(items), cfg)
    warmup = warmup_steps(cfg.warmup, total)
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.grad_decay), lr=cfg.lr, weight_decay=cfg.weight_decay)
    grad_mask = WeightMask(cfg.mask_top_p) if cfg.mask_top_p < 1 else None
    sched = lr_scheduler(opt, total, warmup, cfg.schedule)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    at = checkpoints.restore(model, opt, sched, grad_mask) if checkpoints is not None else Position()
    if progress is not None:
        progress.start(total, "steps")
        progress.update(at.step)

    step, losses, tokens = at.step, at.losses, 0
    micro_per_epoch = math.ceil(len(items) / cfg.batch_size)
    for epoch in range(at.epoch, cfg.epochs):
        since_step = 0
        for i, (ids, mask, labels) in enumerate(batches(items, cfg.batch_size, tokenizer.pad_token_id, epoch_seed(seed, epoch))):
            if epoch == at.epoch and i < at.micro:
                continue  # done before the checkpoint this run resumed from
            with autocast:
                loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            (loss / cfg.grad_accum).backward()
            losses.append(loss.item())
            tokens += int(mask.sum())
            since_step += 1
            if (i + 1) % cfg.grad_accum == 0 or i + 1 == micro_per_epoch:
                optimizer_step(model, opt, sched, cfg.max_grad_norm, grad_mask)
                step += 1
                if progress is not None:
                    progress.update(step, loss=sum(losses[-since_step:]) / since_step, tokens=tokens)
                since_step = tokens = 0
                if checkpoints is not None:
                    checkpoints.after_step(Position(epoch, i + 1, step, losses), total, model, opt, sched, grad_mask)
        log(f"sft epoch {epoch + 1}/{cfg.epochs}: mean loss {sum(losses[-micro_per_epoch:]) / micro_per_epoch:.4f}")
    save_checkpoint(model, tokenizer, out, dtype=save_dtype)
    return {"examples": len(items), "optimizer_steps": step, "final_loss": losses[-1] if losses else None}
