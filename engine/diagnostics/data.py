"""The reasoning set for importance: (prompt, response) pairs from a task or a JSONL file.

A task gives `task.prompt(example, [])` as prompt and the gold rationale as response (examples
without one are skipped). A JSONL file gives one object a line with "prompt"/"response" or
"question"/"answer" fields. `SPEC` may be "task", "task:split" or a path ending in .jsonl/.json.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..jsonl import read_records
from ..tasks import get_task

FIELD_PAIRS = (("prompt", "response"), ("question", "answer"))


def is_file_spec(spec: str) -> bool:
    return spec.endswith((".jsonl", ".json")) or Path(spec).is_file()


def pairs_from_jsonl(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise UserError(f"--data: file {str(path)!r} does not exist")
    pairs = []
    for number, record in enumerate(read_records(path, "--data"), 1):
        fields = next((f for f in FIELD_PAIRS if all(k in record for k in f)), None)
        if fields is None:
            raise UserError(
                f"--data: {path}: record {number} has fields {sorted(record)}; allowed: 'prompt' and 'response', "
                "or 'question' and 'answer'"
            )
        pairs.append((str(record[fields[0]]), str(record[fields[1]])))
    if not pairs:
        raise UserError(f"--data: {path} holds no records")
    return pairs


def pairs_from_task(spec: str) -> list[tuple[str, str]]:
    name, _, split = spec.partition(":")
    task = get_task(name)
    return task_pairs(task, split or task.train_split)


def task_pairs(task, split: str) -> list[tuple[str, str]]:
    """(zero-shot prompt, gold rationale) of a task's split, for a Task object (custom tasks too)."""
    if split not in task.splits:
        raise UserError(f"--data: task {task.name!r} has no split {split!r}; allowed: {', '.join(task.splits)}")
    pairs = [(task.prompt(ex, []), ex.rationale) for ex in task.load(split) if ex.rationale]
    if not pairs:
        raise UserError(f"--data: task {task.name!r} split {split!r} has no gold rationales; give a JSONL file")
    return pairs


def load_pairs(spec: str, limit: int | None = None) -> list[tuple[str, str]]:
    """The first `limit` pairs (all when None) of a task or JSONL file."""
    pairs = pairs_from_jsonl(Path(spec)) if is_file_spec(spec) else pairs_from_task(spec)
    return pairs[:limit] if limit else pairs
