"""Tasks from a user's own data, named in a preset without code, and location overrides.

A preset's `[tasks.NAME]` table (or a dict / `TaskSpec` passed to `get_task(NAME, spec)`):

    [tasks.my_word_problems]
    path = "data/wp"          # a folder holding test.jsonl (and train.jsonl), or one .jsonl file (test)
    # hub = "me/wp"           # instead of path: a data set on the hub; hub_config = "main" if it has one
    kind = "numeric"          # numeric | number_or_text | math | choice
    question = "problem"      # field names in each record; defaults "question", "answer"
    answer = "value"          # numeric: 18 / "1,000" / "$5"; math: LaTeX; choice: a letter or a 0-based index
    rationale = "solution"    # optional, per record too: gold chain of thought, for exemplars from train
    choices = "options"       # choice only, optional: a list field or one string "A) .. B) .."
    shots = "fixed"           # "fixed": the kind's fixed exemplars; "train": draw from train.jsonl

For a built-in task the table may only move its data: `path`, or `hub` (+ `hub_config`),
e.g. `[tasks.gsm8k] path = "/data/gsm8k"` for a folder holding train.jsonl and test.jsonl.
Relative paths are taken from the current directory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from ..errors import ConfigError, UserError
from . import exemplars
from .answers import ANSWER_KINDS, format_number
from .base import Example
from .jsonl_task import BenchmarkTask, Record
from .builtin_benchmarks import LETTERS, answer_sentence, split_options
from .prompts import choice_question
from .sources import HubSplit, Source

FIXED_SHOTS = {
    "numeric": exemplars.NUMERIC,
    "number_or_text": exemplars.NUMERIC,
    "math": exemplars.MATH,
    "choice": exemplars.CHOICE,
}
LOCATION_KEYS = ("path", "hub", "hub_config")


@dataclass(frozen=True)
class TaskSpec:
    kind: str
    path: str | None = None
    hub: str | None = None
    hub_config: str | None = None
    question: str = "question"
    answer: str = "answer"
    rationale: str | None = None
    choices: str | None = None
    shots: str = "fixed"


def parse_spec(name: str, spec: Mapping[str, Any] | TaskSpec) -> TaskSpec:
    table = asdict(spec) if isinstance(spec, TaskSpec) else dict(spec)
    allowed = [f.name for f in fields(TaskSpec)]
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"tasks.{name}.{key}", value, f"one of {', '.join(allowed)}")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"tasks.{name}.{key}", value, "a string")
    if table.get("kind") not in ANSWER_KINDS:
        raise ConfigError(f"tasks.{name}.kind", table.get("kind"), ", ".join(ANSWER_KINDS))
    check_location(name, table)
    if table.get("shots", "fixed") not in ("fixed", "train"):
        raise ConfigError(f"tasks.{name}.shots", table["shots"], "fixed, train")
    if table.get("choices") and table["kind"] != "choice":
        raise ConfigError(f"tasks.{name}.choices", table["choices"], "only with kind = 'choice'")
    return TaskSpec(**table)


def check_location(name: str, table: Mapping[str, Any]) -> None:
    if bool(table.get("path")) == bool(table.get("hub")):
        raise ConfigError(
            f"tasks.{name}.path", table.get("path"), "exactly one of path (a .jsonl file or a folder) and hub"
        )


def source_of(location: Mapping[str, Any], splits: tuple[str, ...]) -> Source:
    if location.get("path"):
        return Source(path=location["path"])
    return Source(hub={s: HubSplit(location["hub"], location.get("hub_config"), s) for s in splits})


def relocate(task: BenchmarkTask, spec: Mapping[str, Any]) -> BenchmarkTask:
    """A built-in task reading its records from another path or hub data set."""
    for key, value in spec.items():
        if key not in LOCATION_KEYS:
            raise ConfigError(
                f"tasks.{task.name}.{key}", value, f"{', '.join(LOCATION_KEYS)} (a built-in task only moves its data)"
            )
    check_location(task.name, spec)
    task.source = source_of(spec, task.splits)
    return task


def custom_task(name: str, spec: Mapping[str, Any] | TaskSpec) -> BenchmarkTask:
    s = parse_spec(name, spec)

    def convert(rec: Record, id: str) -> Example:
        question, raw = rec.text(s.question), rec.get(s.answer)
        if s.kind == "choice":
            if isinstance(raw, int) and not 0 <= raw < len(LETTERS):
                raise UserError(f"task {name!r}: {rec.where}: record {rec.index + 1}: field {s.answer!r} is {raw}; "
                                f"allowed: a letter or a 0-based index below {len(LETTERS)}")
            answer = LETTERS[raw] if isinstance(raw, int) else str(raw).strip()
            if s.choices:
                question = choice_question(question, split_options(rec, s.choices))
        else:
            answer = format_number(float(raw)) if isinstance(raw, (int, float)) else str(raw).strip()
        rationale = str(rec.data.get(s.rationale) or "").strip() if s.rationale else ""
        if "answer is" not in rationale.lower():
            rationale = f"{rationale} {answer_sentence(answer)}".strip()
        return Example(id, question, answer, rationale)

    splits = ("train", "test")
    fixed = FIXED_SHOTS[s.kind] if s.shots == "fixed" else None
    return BenchmarkTask(name, s.kind, source_of(asdict(s), splits), convert, splits, fixed)
