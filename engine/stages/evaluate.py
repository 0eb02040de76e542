"""pass@k with the unbiased estimator, and evaluation of one checkpoint on a set of tasks."""
from __future__ import annotations

import json
from math import comb
from pathlib import Path

from ..tasks import Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct:
    1 - C(n - c, k) / C(n, k), a fraction in [0, 1]."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def build_prompts(task: Task, examples: list, n_shots: int, seed: int, chat: bool) -> list:
    """Few-shot prompts (or chat messages, for chat-template models) for each example."""
    pool = task.shot_pool() if n_shots > 0 else []
    render = task.messages if chat else task.prompt
    return [render(ex, task.shots_for(ex, pool, n_shots, seed)) for ex in examples]


def eval_examples(task: Task, size: int):
    examples = task.load("test")
    return examples[:size] if size else examples


def evaluate(generator, tasks: dict[str, tuple[Task, str]], eval_cfg, size: int, seed: int,
             samples_path: Path | None = None, chat: bool = False) -> list[dict]:
    """Metric rows {task, domain, metric, value (0-100), n} for every task and k.
    tasks maps name -> (task, domain "id"/"ood"). Completions are saved to samples_path (JSONL)."""
    rows, records = [], []
    for name, (task, domain) in tasks.items():
        examples = eval_examples(task, size)
        prompts = build_prompts(task, examples, eval_cfg.fewshot, seed, chat)
        max_new = eval_cfg.max_new_tokens or task.default_max_new_tokens
        completions = generator.generate(prompts, eval_cfg.temperature, eval_cfg.samples, max_new, task.stop_sequences)
        correct_counts = []
        for ex, outs in zip(examples, completions):
            graded = [task.grade(c, ex) for c in outs]
            correct_counts.append(sum(ok for _, ok in graded))
            records += [
                {"task": name, "id": ex.id, "question": ex.question, "gold": ex.answer, "completion": c,
                 "extracted": x, "correct": ok}
                for c, (x, ok) in zip(outs, graded)
            ]
        for k in eval_cfg.k:
            score = sum(pass_at_k(eval_cfg.samples, c, k) for c in correct_counts) / len(examples)
            rows.append({"task": name, "domain": domain, "metric": f"pass@{k}", "value": 100.0 * score, "n": len(examples)})
    if samples_path is not None:
        from ..models.loading import write_atomic

        write_atomic(samples_path, "".join(json.dumps(r) + "\n" for r in records))
    return rows
