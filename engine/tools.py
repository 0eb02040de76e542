"""Tools on checkpoints and files outside any run: one merge step, layer analysis, re-grading.
They load torch (and math-verify) inside the call, never at import."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError


def merge_checkpoints(base, prev, sft, out, alpha: float, drop_rate: float, seed: int, device: str = "cpu"):
    """theta = alpha * base + (1 - alpha) * (prev + DARE_p(sft - prev)), streamed tensor by tensor;
    writes nothing unless every input is valid. Returns the merge result (tensors, parameters,
    bytes_written, seconds, out)."""
    from .merge.stream import merge_checkpoints as merge

    return merge(base, prev, sft, out, alpha=alpha, drop_rate=drop_rate, seed=seed, device=device)


def analyze_checkpoints(before, after, data: str | None = None, limit: int = 256, batch_size: int = 8,
                        max_length: int = 512, device: str | None = None) -> dict:
    """Layer importance on `before` (over `data`: a task, task:split or JSONL) vs the weight change
    before -> after, per layer and module, with the Spearman verdict (the `imm analyze` JSON)."""
    for name, value in (("limit", limit), ("batch-size", batch_size), ("max-length", max_length)):
        if value < 1:
            raise UserError(f"--{name}: got {value}; allowed: an integer >= 1")
    from .diagnostics import analyze

    return analyze(before, after, data, limit=limit, batch_size=batch_size, max_length=max_length, device=device)


def parse_task_spec(text: str | None) -> dict | None:
    """A custom task table given as JSON text (`imm grade --spec`)."""
    if text is None:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--spec: not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(spec, dict):
        raise UserError(f"--spec: expected a JSON object, got {text!r}")
    return spec


def grade_file(task_name: str, file: Path, spec: dict | None = None) -> list[dict]:
    """Each record of a JSONL file (the task's gold fields, or `gold`, plus `completion`) with
    `extracted` and `correct` added."""
    from .tasks import get_task
    from .tasks.base import Example
    from .tasks.jsonl_task import BenchmarkTask
    from .tasks.sources import read_jsonl

    task = get_task(task_name, spec)
    records = read_jsonl(task.name, file, "input")
    graded = []
    for i, record in enumerate(records):
        if "completion" not in record:
            raise UserError(f"{file}: record {i + 1} has no field 'completion'")
        if "gold" in record:
            example = Example(id=str(i), question=str(record.get("question", "")), answer=str(record["gold"]))
        elif isinstance(task, BenchmarkTask):
            example = task.example(record, i, where=str(file))
        else:
            raise UserError(f"{file}: record {i + 1} has no field 'gold'; allowed: records with 'gold' "
                            f"(task {task_name!r} is generated, so it has no stored gold fields)")
        extracted, correct = task.grade(str(record["completion"]), example)
        graded.append({**record, "extracted": extracted, "correct": correct})
    return graded
