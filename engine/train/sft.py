"""Supervised fine-tuning on kept samples: loss on the response tokens only, AdamW, warm-up,
then cosine or linear decay. Backend `hf` runs plain PyTorch on the CPU or one GPU."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from ..config import SFTConfig
from .textdata import batches, encode_pairs


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimiser step `step` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def optimizer_steps(n_items: int, cfg: SFTConfig) -> int:
    micro = math.ceil(n_items / cfg.batch_size)
    return math.ceil(micro / cfg.grad_accum) * cfg.epochs


def train(init_path: Path, pairs: list[tuple[str, str]], cfg: SFTConfig, out: Path, device: str,
          save_dtype, seed: int, log: Callable[[str], None] = print) -> dict:
    """Fine-tune the model at init_path on (prompt, response) pairs; save it to `out` atomically.
    Master weights are fp32; on a GPU the forward runs under bf16 autocast."""
    import torch

    from ..models.loading import load_model, load_tokenizer, save_checkpoint

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(init_path, padding_side="right")
    model = load_model(init_path, device, torch.float32).train()
    items = encode_pairs(tokenizer, pairs, cfg.max_length)
    total = optimizer_steps(len(items), cfg)
    warmup = max(1, round(cfg.warmup * total)) if cfg.warmup > 0 else 0
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    step, losses = 0, []
    micro_per_epoch = math.ceil(len(items) / cfg.batch_size)
    for epoch in range(cfg.epochs):
        for i, (ids, mask, labels) in enumerate(batches(items, cfg.batch_size, tokenizer.pad_token_id, seed * 1000 + epoch)):
            with autocast:
                loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            (loss / cfg.grad_accum).backward()
            losses.append(loss.item())
            if (i + 1) % cfg.grad_accum == 0 or i + 1 == micro_per_epoch:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
        log(f"sft epoch {epoch + 1}/{cfg.epochs}: mean loss {sum(losses[-micro_per_epoch:]) / micro_per_epoch:.4f}")
    save_checkpoint(model, tokenizer, out, dtype=save_dtype)
    return {"examples": len(items), "optimizer_steps": step, "final_loss": losses[-1] if losses else None}
