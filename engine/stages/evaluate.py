"""Step 5: pass@k (unbiased estimator) of a checkpoint on the in-domain and out-of-domain tasks;
the eval stage scores SFT_t and Merge_t (and the base once, as iteration 0)."""
from __future__ import annotations

from pathlib import Path

from ..jsonl import write_records
from ..results_table import checkpoint_label
from ..metrics import pass_at_k
from ..tasks import Task
from ..tasks.prompts import build_prompts
from .context import StageContext, StageResult
from .resumable import PartialFile, chunks_of, model_stamp, run_chunks
from ..domain import Checkpoint, CheckpointKind, Method


def eval_examples(task: Task, size: int):
    examples = task.load("test")
    return examples[:size] if size else examples


def evaluate_tasks(generator, tasks: dict[str, tuple[Task, str]], eval_cfg, size: int, seed: int,
                   samples_path: Path | None = None, chat: bool = False, progress=None,
                   partial: PartialFile | None = None, safe_point=None, label: str | None = None) -> list[dict]:
    """Metric rows {task, domain, metric, value (0-100), n} for every task and k.
    tasks maps name -> (task, domain "id"/"ood"). Completions are saved to samples_path (JSONL).
    `progress` (a ProgressReporter) hears the questions answered, over all tasks. Questions are
    answered in chunks of eval.batch_size, every task's at once (run_chunks: dealt over the
    generator's workers, if it has them), kept in `partial` as they finish. `label` names the
    checkpoint on the progress bar."""
    examples_of = {name: eval_examples(task, size) for name, (task, _) in tasks.items()}
    if progress is not None:
        progress.start(sum(map(len, examples_of.values())), "questions", label=label)
    on_batch = None if progress is None else (lambda chunk, done, tokens: progress.advance(done, tokens=tokens))
    on_restored = None if progress is None else (lambda chunk: progress.restore(len(chunk.prompts)))
    chunks = {}
    for name, (task, _) in tasks.items():
        prompts = build_prompts(task, examples_of[name], eval_cfg.fewshot, eval_cfg.exemplars, seed, chat, "eval.fewshot")
        chunks[name] = chunks_of(prompts, eval_cfg.temperature, eval_cfg.samples,
                                 eval_cfg.max_new_tokens or task.default_max_new_tokens, task.stop_sequences,
                                 seed=seed, chunk_size=eval_cfg.batch_size)
    done = run_chunks(generator, [c for cs in chunks.values() for c in cs], partial, safe_point, on_batch, on_restored)
    rows, records = [], []
    for name, (task, domain) in tasks.items():
        examples = examples_of[name]
        completions = [outs for c in chunks[name] for outs in done[c.key]]
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
        write_records(samples_path, records)
    return rows


def evaluate_checkpoint(ctx: StageContext, path: str, checkpoint: str, t: int, size: int | None = None,
                        samples_path: Path | None = None, label: str | None = None) -> list[dict]:
    """Metric rows of one checkpoint on every task (size: questions per task, default eval_size),
    seeded with ctx.seed; its completions go to eval_<checkpoint>.jsonl unless samples_path says,
    and its finished chunks to that file's .partial until then (a resumed eval continues them).
    The progress bar names it as `label` (default: its checkpoint label, e.g. SFT1)."""
    samples_path = samples_path or ctx.paths.eval_samples(t, checkpoint)
    partial = PartialFile(samples_path, model_stamp(path), ctx.log)
    gen = ctx.generator(path, ctx.cfg.eval.batch_size, ctx.cfg.eval.workers)
    ctx.log(f"[iter {t}] eval {checkpoint}: decoding {decoding(gen, ctx.cfg.eval.temperature)} on {', '.join(gen.devices)}")
    try:
        rows = evaluate_tasks(gen, ctx.tasks(), ctx.cfg.eval, ctx.cfg.tasks.eval_size if size is None else size, ctx.seed,
                              samples_path=samples_path, chat=ctx.cfg.model.chat_template, progress=ctx.progress,
                              partial=partial, safe_point=lambda when: ctx.safe_point(f"{checkpoint}-{when}"),
                              label=label or checkpoint_label(checkpoint))
    finally:
        gen.close()
    partial.remove()
    for r in rows:
        ctx.log(f"[iter {t}] eval {checkpoint} {r['task']} ({r['domain']}) {r['metric']} = {r['value']:.1f}% (n={r['n']})")
    return [{"checkpoint": checkpoint, "iteration": t, **r} for r in rows]


def decoding(generator, temperature: float) -> dict:
    """The effective decoding settings of a generator's calls at `temperature` (for the stage info)."""
    from ..models.generation import sampling_settings

    return {**sampling_settings(temperature), "eos_token_ids": generator.eos_ids}


def evaluate(ctx: StageContext, t: int) -> StageResult:
    """Metric rows of the base (t = 0), or of SFT_t and Merge_t. Progress: questions, restarted
    for each checkpoint and named by it ("SFT1 (1 of 2)"). The stage info records the decoding
    settings and the workers' devices."""
    from ..models.generation import sampling_settings

    ctx.paths.iteration(t).mkdir(exist_ok=True)
    info = {"decoding": sampling_settings(ctx.cfg.eval.temperature), "workers": ctx.worker_labels(ctx.cfg.eval.workers)}
    if t == 0:
        return StageResult(None, info, {"metrics": evaluate_checkpoint(ctx, ctx.base_path, str(Checkpoint(CheckpointKind.BASE)), 0)})
    checkpoints = [(str(ctx.paths.sft(t)), str(Checkpoint.sft(t)))]
    if ctx.cfg.method == Method.IMM:
        checkpoints.append((str(ctx.paths.merged(t)), str(Checkpoint.merge(t))))
    metrics = []
    for i, (path, checkpoint) in enumerate(checkpoints, 1):
        label = checkpoint_label(checkpoint) + (f" ({i} of {len(checkpoints)})" if len(checkpoints) > 1 else "")
        metrics += evaluate_checkpoint(ctx, path, checkpoint, t, label=label)
    return StageResult(None, info, {"metrics": metrics})
