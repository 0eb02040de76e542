"""`imm run --dry-run`: the resolved plan of a run (stages, data sizes, expected samples) without
loading a model or writing anything. Task data is read (local JSONL) to count questions; a task
whose data cannot be read here is reported, not fatal."""
from __future__ import annotations

import json

from .config import BUILTIN_PREFIX, RunConfig
from .errors import UserError
from .runstate.plan import plan


def split_size(task, split: str) -> str | int:
    try:
        return len(task.load(split))
    except (UserError, KeyError) as exc:
        return f"unavailable here ({str(exc).splitlines()[0][:120]})"


def describe(cfg: RunConfig) -> str:
    import os

    from .tasks import get_task

    # Counting questions must not download data sets: hub data that is not cached shows as unavailable.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    g, s, m, e = cfg.generation, cfg.sft, cfg.merge, cfg.eval
    lines = [f"plan of {cfg.name}: method {cfg.method}, {cfg.iterations} iterations, seed {cfg.seed}, device {cfg.device}"]
    kind = "builtin, built offline" if cfg.model.path.startswith(BUILTIN_PREFIX) else "local folder or hub id; not loaded"
    lines.append(f"model: {cfg.model.path} ({kind}), dtype {cfg.model.dtype}, chat template {cfg.model.chat_template}")
    if cfg.teacher.path:
        lines.append(f"teacher (distillation; generates the samples): {cfg.teacher.path}")

    lines.append("tasks:")
    n_train = 0
    for i, name in enumerate(cfg.all_tasks()):
        task = get_task(name, cfg.tasks.specs.get(name))
        test = split_size(task, "test")
        evaluated = min(test, cfg.tasks.eval_size) if isinstance(test, int) and cfg.tasks.eval_size else test
        line = f"  {name} ({'in-domain' if i == 0 else 'out-of-domain'}): test {test}, evaluated {evaluated}"
        if i == 0:
            train = split_size(task, task.train_split)
            line += f"; {task.train_split} {train}"
            if isinstance(train, int):
                n_train = min(train, cfg.tasks.train_size) if cfg.tasks.train_size else train
                line += f", used per iteration {n_train}"
        lines.append(line)

    per_question = g.k * len(g.temperatures)
    samples = f"{n_train * per_question} samples per iteration" if n_train else "train split unavailable here"
    lines.append(f"generate: k {g.k} x temperatures {g.temperatures} = {per_question} samples per question -> {samples} "
                 f" (at most {g.max_new_tokens} new tokens, {g.fewshot}-shot, backend {g.backend})")
    data = {"imm": "this iteration's kept samples", "vanilla": "this iteration's kept samples",
            "mixture": f"this iteration's kept samples + {cfg.mixture.share:g}x as many from earlier iterations",
            "accumulate": "all kept samples so far"}[cfg.method]
    lines.append(f"sft: {data}; {s.epochs} epochs, batch {s.batch_size} x grad-accum {s.grad_accum} = "
                 f"{s.batch_size * s.grad_accum} per step, lr {s.lr:g}, warm-up {s.warmup:g}, {s.schedule}, max length {s.max_length}, "
                 f"backend {s.backend}")
    if cfg.method == "imm":
        lines.append(f"merge: theta = {m.alpha:g} * base + {1 - m.alpha:g} * (prev + DARE_p(sft - prev)), p {m.drop_rate:g}, "
                     f"mode {m.mode}" + (" (layer scales N * I_n / sum I)" if m.mode == "importance" else ""))
    checkpoints = "SFT_t and Merge_t" if cfg.method == "imm" else "SFT_t"
    lines.append(f"eval: {', '.join(f'pass@{k}' for k in e.k)} from {e.samples} samples per question at temperature {e.temperature:g}, "
                 f"{e.fewshot}-shot, on base once and {checkpoints} every iteration")
    steps = plan(cfg)
    lines.append(f"stages ({len(steps)}): " + ", ".join(f"{t}:{st}" for t, st in steps))
    lines.append("resolved config: " + json.dumps(cfg.to_dict(), sort_keys=True))
    return "\n".join(lines)
