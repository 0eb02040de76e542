"""Builds the embedded default's base model offline: the tiny char-level Llama of
`engine.models.tiny`, given a short pre-training on synthetic arithmetic with chain of thought.

The result is cached in the home folder (models/NAME-vN), built once under a file lock so two
runs starting together do not both build it.
"""
from __future__ import annotations

import fcntl
import random
from pathlib import Path
from typing import Callable

# Pre-training mixture: (task, share). Short enough that the base is far from perfect on the
# in-domain 3-term sums, so self-improvement has room; the other families keep the
# out-of-domain tasks above zero.
MIXTURE = [("arith_add2", 0.4), ("arith_add3", 0.2), ("arith_add4", 0.2), ("arith_mix3", 0.2)]
BUILTINS = {"tiny-arith": {"version": 1, "steps": 400, "batch_size": 64, "lr": 3e-3, "seed": 1234}}


def builtin_folder(home: Path, name: str) -> Path:
    return Path(home) / "models" / f"{name}-v{BUILTINS[name]['version']}"


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
               log: Callable[[str], None] = print) -> None:
    import torch

    from .loading import save_checkpoint
    from ..train.sft import lr_factor
    from ..train.textdata import collate, encode_pairs
    from .tiny import new_tiny_model

    torch.manual_seed(seed)
    model, tokenizer = new_tiny_model(seed=seed)
    items = encode_pairs(tokenizer, pretraining_pairs(steps * batch_size, seed), max_length=128)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, steps // 20, "cosine"))
    model.train()
    for step in range(steps):
        ids, mask, labels = collate(items[step * batch_size : (step + 1) * batch_size], tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"base pre-training step {step + 1}/{steps}: loss {loss.item():.4f}")
    save_checkpoint(model.eval(), tokenizer, out)


def ensure_builtin(home: Path, name: str, log: Callable[[str], None] = print) -> Path:
    """The cached builtin base model's folder, building it first if it is not there yet."""
    folder = builtin_folder(home, name)
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "config.json").exists():
            spec = BUILTINS[name]
            log(f"building base model {name} (once; cached in {folder})")
            build_tiny(folder, spec["steps"], spec["batch_size"], spec["lr"], spec["seed"], log)
    return folder
