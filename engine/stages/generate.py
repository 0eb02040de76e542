"""Step 1 of an iteration: k chain-of-thought samples per training question, few-shot prompted,
at each configured temperature (or a teacher's samples, for distillation)."""
from __future__ import annotations

from ..jsonl import write_records
from .context import StageContext, StageResult
from .evaluate import build_prompts


def generate(ctx: StageContext, t: int) -> StageResult:
    """samples.jsonl: one record per sample (progress: samples, with generated tokens/s)."""
    g, teacher = ctx.cfg.generation, ctx.cfg.teacher
    task = ctx.in_domain_task()
    examples = ctx.train_examples(task)
    # Distillation: the teacher writes the samples (in its own prompt format) instead of the model.
    chat = teacher.chat_template if teacher.path else ctx.cfg.model.chat_template
    prompts = build_prompts(task, examples, g.fewshot, ctx.seed, chat)
    if teacher.path:
        gen = ctx.generator(teacher.path, g.batch_size, teacher.dtype)
    else:
        gen = ctx.generator(ctx.prev_path(t), g.batch_size)
    ctx.progress.start(len(prompts) * g.k * len(g.temperatures), "samples")
    records = []
    try:
        for temperature in g.temperatures:
            outs = gen.generate(prompts, temperature, g.k, g.max_new_tokens, task.stop_sequences,
                                on_batch=lambda done, tokens: ctx.progress.advance(done * g.k, tokens=tokens))
            for ex, completions in zip(examples, outs):
                records += [
                    {"id": ex.id, "question": ex.question, "gold": ex.answer, "temperature": temperature,
                     "sample": i, "completion": c}
                    for i, c in enumerate(completions)
                ]
            ctx.log(f"[iter {t}] generate: temperature {temperature}: {len(examples) * g.k} samples")
    finally:
        gen.close()
    ctx.paths.iteration(t).mkdir(exist_ok=True)
    write_records(ctx.paths.samples(t), records)
    info = {"questions": len(examples), "samples": len(records), "generator": teacher.path or "model"}
    return StageResult(ctx.paths.samples(t), info)
