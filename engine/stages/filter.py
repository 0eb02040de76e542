"""Step 2: keep the samples whose final answer matches the ground truth.

filter.answer = "stated" (the method's presets) accepts only an answer the completion states
("The answer is ...", "####", \\boxed{}); "any" also takes evaluation's lenient fallback (the last
number or letter). filter.dedup keeps each distinct correct completion of a question once (the
method keeps them all). The stage info counts what each rule would keep, so a run shows how much
the choice moves its SFT data.
"""
from __future__ import annotations

from ..jsonl import read_records, write_records
from .context import StageContext, StageResult


def filter(ctx: StageContext, t: int) -> StageResult:  # noqa: A001 -- the method's name for the step
    """kept.jsonl (the SFT data, with prompt and response) and graded.jsonl (every sample with
    `extracted`, `correct` (by the configured rule), `answer_stated` and `kept`, for browsing).
    Progress: samples graded."""
    from ..tasks.base import Example

    task = ctx.in_domain_task()
    rule = ctx.cfg.filter
    samples = read_records(ctx.paths.samples(t), "samples")
    ctx.progress.start(len(samples), "samples")
    kept, graded, seen, solved = [], [], set(), set()
    correct_any = correct_stated = duplicates = 0
    for r in samples:
        ex = Example(id=r["id"], question=r["question"], answer=r["gold"])
        extracted, lenient = task.grade(r["completion"], ex)
        stated_extracted, strict = task.grade(r["completion"], ex, stated_only=True)
        correct_any += lenient
        correct_stated += strict
        correct = strict if rule.answer == "stated" else lenient
        key = (r["id"], r["completion"].strip())
        duplicate = correct and key in seen
        duplicates += duplicate
        keep = correct and not (rule.dedup and duplicate)
        if correct:
            seen.add(key)
        if keep:
            solved.add(r["id"])
            prompt = task.messages(ex, []) if ctx.cfg.model.chat_template else task.prompt(ex, [])
            kept.append({**r, "prompt": prompt, "response": r["completion"].strip()})
        graded.append({**r, "extracted": stated_extracted if rule.answer == "stated" else extracted,
                       "correct": correct, "answer_stated": stated_extracted is not None, "kept": keep})
        ctx.progress.advance()
    write_records(ctx.paths.graded(t), graded)
    write_records(ctx.paths.kept(t), kept)
    info = {"samples": len(samples), "kept": len(kept), "yield_pct": round(100 * len(kept) / max(1, len(samples)), 1),
            "questions_solved": len(solved), "answer_rule": rule.answer, "dedup": rule.dedup,
            # what each rule keeps (before removing duplicates), and the correct duplicates found
            "correct_stated": correct_stated, "correct_any": correct_any, "duplicates": duplicates}
    return StageResult(ctx.paths.kept(t), info)
