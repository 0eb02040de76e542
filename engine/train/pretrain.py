"""The short pre-training that makes the embedded default's base model: the tiny char-level Llama
of engine.models.tiny on synthetic arithmetic with chain of thought (engine.train.builtin caches
the result)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from .schedule import lr_scheduler, optimizer_step

# Pre-training mixture: (task, share). Short enough that the base is far from perfect on the
# in-domain 3-term sums, so self-improvement has room; the other families keep the
# out-of-domain tasks above zero.
MIXTURE = [("arith_add2", 0.4), ("arith_add3", 0.2), ("arith_add4", 0.2), ("arith_mix3", 0.2)]


def pretraining_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    from ..tasks import get_task

    rng = random.Random(seed)
    pools = [(get_task(name), share) for name, share in MIXTURE]
    pairs = []
    for task, share in pools:
        examples = task.load("train")
        pairs += [(task.prompt(ex, []), ex.rationale) for ex in rng.choices(examples, k=round(n * share))]
    rng.shuffle(pairs)
    return pairs


def build_tiny(out: Path, steps: int, batch_size: int, lr: float, seed: int,
               log: Callable[[str], None] = print, progress=None) -> None:
    import torch

    from ..models.loading import save_checkpoint
    from ..models.tiny import new_tiny_model
    from .textdata import collate, encode_pairs

    torch.manual_seed(seed)
    model, tokenizer = new_tiny_model(seed=seed)
    items = encode_pairs(tokenizer, pretraining_pairs(steps * batch_size, seed), max_length=128)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = lr_scheduler(opt, steps, steps // 20, "cosine")
    model.train()
    if progress is not None:
        progress.start(steps, "steps")
    for step in range(steps):
        ids, mask, labels = collate(items[step * batch_size : (step + 1) * batch_size], tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer_step(model, opt, sched, max_grad_norm=1.0)
        if progress is not None:
            progress.update(step + 1, loss=loss.item(), tokens=int(mask.sum()))
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"base pre-training step {step + 1}/{steps}: loss {loss.item():.4f}")
    save_checkpoint(model.eval(), tokenizer, out)
