"""Step 1 of an iteration: generation.k chain-of-thought samples per training question in total,
dealt round-robin to the configured temperatures (sample i at temperatures[i % T]), few-shot
prompted; or a teacher's samples (distillation); or the train split's gold rationales
(generation.source = "gold": SFT on real data instead of self-generated data)."""
from __future__ import annotations

from ..config import samples_per_temperature
from ..jsonl import write_records
from .context import StageContext, StageResult
from ..tasks.prompts import build_prompts
from .evaluate import decoding
from .resumable import PartialFile, chunks_of, model_stamp, run_chunks


def gold_samples(ctx: StageContext, t: int) -> StageResult:
    """samples.jsonl holding one record per question whose completion is its gold rationale."""
    examples = ctx.train_examples(ctx.in_domain_task())
    records = [{"id": ex.id, "question": ex.question, "gold": ex.answer, "temperature": None, "sample": 0,
                "completion": ex.rationale} for ex in examples if ex.rationale]
    ctx.log(f"[iter {t}] generate: {len(records)} gold rationales of {len(examples)} questions")
    ctx.paths.iteration(t).mkdir(exist_ok=True)
    write_records(ctx.paths.samples(t), records)
    return StageResult(ctx.paths.samples(t), {"questions": len(examples), "samples": len(records), "generator": "gold"})


def generate(ctx: StageContext, t: int) -> StageResult:
    """samples.jsonl: one record per sample (progress: samples, with generated tokens/s). The
    stage info records the decoding settings of each temperature. Finished chunks survive a kill
    or a stop (engine.stages.resumable)."""
    g, teacher = ctx.cfg.generation, ctx.cfg.teacher
    if g.source == "gold":
        return gold_samples(ctx, t)
    task = ctx.in_domain_task()
    examples = ctx.train_examples(task)
    # Distillation: the teacher writes the samples (in its own prompt format) instead of the model.
    chat = teacher.chat_template if teacher.path else ctx.cfg.model.chat_template
    prompts = build_prompts(task, examples, g.fewshot, g.exemplars, ctx.seed, chat, "generation.fewshot")
    model = teacher.path or ctx.prev_path(t)
    ctx.paths.iteration(t).mkdir(exist_ok=True)
    partial = PartialFile(ctx.paths.samples(t), model_stamp(model), ctx.log)
    if teacher.path:
        gen = ctx.generator(teacher.path, g.batch_size, g.workers, teacher.dtype, teacher.trust_remote_code)
    else:
        gen = ctx.generator(model, g.batch_size, g.workers)
    ctx.progress.start(len(prompts) * g.k, "samples")
    parts = [(temperature, n) for temperature, n in zip(g.temperatures, samples_per_temperature(g)) if n]
    # every temperature's chunks at once, so that workers never wait for each other between them
    chunks = [chunks_of(prompts, temperature, n, g.max_new_tokens, task.stop_sequences, seed=ctx.seed,
                        chunk_size=g.batch_size) for temperature, n in parts]
    try:
        settings = [decoding(gen, temperature) for temperature, _ in parts]
        done = run_chunks(gen, [c for cs in chunks for c in cs], partial, ctx.safe_point,
                          lambda chunk, prompts, tokens: ctx.progress.advance(prompts * chunk.n, tokens=tokens),
                          lambda chunk: ctx.progress.restore(len(chunk.prompts) * chunk.n))
    finally:
        gen.close()
    records = []
    for (temperature, n), setting, part in zip(parts, settings, chunks):
        outs = [completions for c in part for completions in done[c.key]]
        for ex, completions in zip(examples, outs):
            records += [
                {"id": ex.id, "question": ex.question, "gold": ex.answer, "temperature": temperature,
                 "sample": i, "completion": c}
                for i, c in enumerate(completions)
            ]
        ctx.log(f"[iter {t}] generate: temperature {temperature}: {len(examples) * n} samples ({setting})")
    write_records(ctx.paths.samples(t), records)
    partial.remove()
    info = {"questions": len(examples), "samples": len(records), "generator": teacher.path or "model",
            "decoding": settings, "workers": ctx.worker_labels(g.workers)}
    return StageResult(ctx.paths.samples(t), info)
