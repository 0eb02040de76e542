"""The kernels the hf SFT loop runs (sft.kernels): liger-kernel's fused RMSNorm, SwiGLU, rotary
embedding and fused linear cross-entropy (Triton, CUDA only), or PyTorch's own ops ("eager").

Written against liger-kernel 0.8's documented API: `apply_liger_kernel_to_llama` /
`apply_liger_kernel_to_qwen2` with `model=` (the instance's norms and MLPs), and
`liger_kernel.transformers.functional.liger_fused_linear_cross_entropy` in place of
engine.train.loss's chunked head loss (the same sum over the response tokens, fp32 accumulation).
Not yet run on a GPU here (no GPU was lent): the selection and its errors are tested on the CPU,
the kernels' losses by tests marked gpu.

liger's apply functions also rebind names in transformers' modeling module (the rotary function is
looked up there at every forward, the norm and MLP classes at construction): `patched` restores
them when training ends, so that the process's later models run transformers' own code.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util

from ..errors import ConfigError

APPLY = {"llama": "apply_liger_kernel_to_llama", "qwen2": "apply_liger_kernel_to_qwen2"}


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def choose(setting: str, device: str, model_type: str, installed: bool) -> str:
    """"liger" or "eager" for sft.kernels = setting on `device` for a model of `model_type`:
    auto takes liger where it can run, liger without it is an error naming the field."""
    why_not = None
    if not device.startswith("cuda"):
        why_not = f"liger-kernel runs on CUDA only (this SFT runs on {device})"
    elif model_type not in APPLY:
        why_not = f"liger-kernel is applied to {' and '.join(APPLY)} models here (this model is {model_type!r})"
    elif not installed:
        why_not = "liger-kernel is not installed (pip install liger-kernel)"
    if setting == "eager" or (setting == "auto" and why_not):
        return "eager"
    if why_not:
        raise ConfigError("sft.kernels", setting, f"'auto' or 'eager' here: {why_not}")
    return "liger"


@contextlib.contextmanager
def patched(model, kind: str):
    """Within: the model's RMSNorm, SwiGLU MLP and rotary embedding are liger's (kind "liger");
    yields the head loss for engine.train.loss.response_loss_sum (None: its own)."""
    if kind != "liger":
        yield None
        return
    import torch
    from liger_kernel.transformers import functional

    modeling = importlib.import_module(type(model).__module__)
    saved = dict(vars(modeling))
    getattr(importlib.import_module("liger_kernel.transformers"), APPLY[model.config.model_type])(
        rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False, model=model)

    def linear_ce_sum(hidden, weight, targets):
        return functional.liger_fused_linear_cross_entropy(hidden, weight, targets, reduction="sum",
                                                           accum_dtype=torch.float32)

    try:
        yield linear_ce_sum
    finally:
        for name in [n for n in vars(modeling) if n not in saved]:
            delattr(modeling, name)
        for name, value in saved.items():
            if vars(modeling).get(name) is not value:
                setattr(modeling, name, value)
