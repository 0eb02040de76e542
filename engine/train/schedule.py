"""What every training loop here shares: the warm-up + cosine/linear learning-rate factor, the
optimizer-step count, the optimizer step with gradient clipping and the reproducible per-epoch
shuffle. The hf SFT
loop, the DeepSpeed worker and the tiny base's pre-training all take them from here, so the
backends train alike."""
from __future__ import annotations

import math
import random



def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimiser step `step` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def warmup_steps(share: float, total: int) -> int:
    """Warm-up steps for a warm-up given as a share of the total steps (at least one if any)."""
    return max(1, round(share * total)) if share > 0 else 0


def lr_scheduler(opt, total: int, warmup: int, schedule: str):
    import torch

    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, schedule))


def optimizer_steps(n_items: int, cfg, world_size: int = 1) -> int:
    """Optimizer steps of an SFT run: a step every cfg.batch_size x cfg.grad_accum x world_size
    examples and at the end of each epoch (engine.train.loss.optimizer_step_batches)."""
    return math.ceil(n_items / (cfg.batch_size * cfg.grad_accum * world_size)) * cfg.epochs


def optimizer_step(model, opt, sched, max_grad_norm: float, grad_mask=None):
    """Mask the gradient (weight masking, engine.train.interventions), clip its norm to
    max_grad_norm (0: no clipping), step the optimizer and the schedule, clear the gradients.
    The gradient is the model's, or its fp32 masters' (engine.train.master_weights).
    Returns the gradient's total norm before clipping (a 0-d tensor on the model's device)."""
    import torch

    from .master_weights import trained_tensors

    params = trained_tensors(model, opt)
    if grad_mask is not None:
        grad_mask.apply(params)
    if max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return norm


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch."""
    return seed * 1000 + epoch


def shuffled(n_items: int, seed: int) -> list[int]:
    """The indices 0..n-1 in the reproducible order of `seed`."""
    order = list(range(n_items))
    random.Random(seed).shuffle(order)
    return order
