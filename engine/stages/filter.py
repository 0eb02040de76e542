"""Step 2: keep the samples whose final answer matches the ground truth (each distinct
completion of a question once)."""
from __future__ import annotations

from ..jsonl import read_records, write_records
from .context import StageContext, StageResult


def filter(ctx: StageContext, t: int) -> StageResult:  # noqa: A001 -- the method's name for the step
    """kept.jsonl (the SFT data, with prompt and response) and graded.jsonl (every sample with
    `extracted`, `correct` and `kept`, for browsing). Progress: samples graded."""
    from ..tasks.base import Example

    task = ctx.in_domain_task()
    samples = read_records(ctx.paths.samples(t), "samples")
    ctx.progress.start(len(samples), "samples")
    kept, graded, seen, solved = [], [], set(), set()
    for r in samples:
        ex = Example(id=r["id"], question=r["question"], answer=r["gold"])
        extracted, correct = task.grade(r["completion"], ex)
        key = (r["id"], r["completion"].strip())
        keep = correct and key not in seen
        if keep:
            seen.add(key)
            solved.add(r["id"])
            prompt = task.messages(ex, []) if ctx.cfg.model.chat_template else task.prompt(ex, [])
            kept.append({**r, "prompt": prompt, "response": r["completion"].strip()})
        graded.append({**r, "extracted": extracted, "correct": correct, "kept": keep})
        ctx.progress.advance()
    write_records(ctx.paths.graded(t), graded)
    write_records(ctx.paths.kept(t), kept)
    info = {"samples": len(samples), "kept": len(kept), "yield_pct": round(100 * len(kept) / max(1, len(samples)), 1),
            "questions_solved": len(solved)}
    return StageResult(ctx.paths.kept(t), info)
