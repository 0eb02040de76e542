"""The SFT interventions of the method's comparison table, in the readings this project chose
(the paper gives only their names and parameters: gradient clipping max_norm 2.0, gradient decay
gamma 0.9, weight masking TopP 0.3). Clipping is `sft.max_grad_norm` (engine.train.schedule).

Gradient decay (`sft.grad_decay` = gamma): layer-wise decay of the update, deepest layer first.
The parameters of decoder layer n of N train at lr * gamma ** (N - 1 - n), the embeddings below
layer 0 at lr * gamma ** N, the final norm and the head at lr. Under AdamW an update scales with
its learning rate, not with its gradient (Adam divides the gradient's scale out), so the decay is
applied through per-layer learning rates: the update of layer n is gamma ** (N - 1 - n) times what
it would be without the decay.

Weight masking (`sft.mask_top_p` = p): SFT may change only the share p of each parameter tensor's
entries, those of largest importance |grad * W| (the method's importance, elementwise) on the
first optimizer step's batch. The mask is fixed from then on and multiplies every gradient before
clipping, so Adam's moments of the other entries stay zero and they keep their values (with
sft.weight_decay 0, as in the presets; decoupled weight decay still shrinks every weight).
"""
from __future__ import annotations

import re

LAYER_RE = re.compile(r"\.layers\.(\d+)\.")
EMBED_RE = re.compile(r"embed")


def layer_lr_scales(names: list[str], gamma: float) -> list[float]:
    """The learning-rate factor of each named parameter under gradient decay gamma."""
    layers = [int(m.group(1)) if (m := LAYER_RE.search(n)) else None for n in names]
    n_layers = max((i for i in layers if i is not None), default=-1) + 1
    scales = []
    for name, layer in zip(names, layers):
        if layer is not None:
            scales.append(gamma ** (n_layers - 1 - layer))
        else:
            scales.append(gamma ** n_layers if EMBED_RE.search(name) else 1.0)
    return scales


def param_groups(model, lr: float, gamma: float) -> list[dict]:
    """AdamW parameter groups: one group at lr without decay (gamma 1), else one per scale."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if gamma == 1:
        return [{"params": [p for _, p in named], "lr": lr}]
    groups: dict[float, list] = {}
    for (_, p), scale in zip(named, layer_lr_scales([n for n, _ in named], gamma)):
        groups.setdefault(scale, []).append(p)
    return [{"params": ps, "lr": lr * scale} for scale, ps in groups.items()]


def top_share(score, share: float):
    """A boolean mask of the `share` of entries of largest `score` (at least one; ties kept)."""
    flat = score.abs().flatten().float()
    k = max(1, round(share * flat.numel()))
    threshold = flat.kthvalue(flat.numel() - k + 1).values
    return score.abs() >= threshold


class WeightMask:
    """Weight masking: `apply(params)` (the trained tensors, in the model's parameter order) before
    each optimizer step; the first call fixes the mask."""

    def __init__(self, share: float):
        self.share = share
        self.masks: list | None = None

    def apply(self, params) -> None:
        params = [p for p in params if p.grad is not None]
        if self.masks is None:
            self.masks = [top_share(p.grad * p.detach(), self.share) for p in params]
        for p, mask in zip(params, self.masks):
            p.grad.mul_(mask)
