"""`BenchmarkTask`: a task over stored records, sharing prompt format, answer kinds and loading.

A task is a `Source` (where records live), a converter (record -> `Example`), an answer kind
(numeric, number_or_text, math, choice) and exemplars: the pool random shots are drawn from (its
train split, or fixed exemplars) and the fixed shots (the method's ten for GSM8K and MATH, else
the pool in order). The built-in benchmarks (`engine.tasks.builtin_benchmarks`) and custom tasks
(`engine.tasks.custom`) are both instances.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from .answers import ANSWER_KINDS
from .base import Example, Task, cut_at_stop
from .prompts import STOP_SEQUENCES, cot_messages, cot_prompt
from .sources import Source, load_records


@dataclass(frozen=True)
class Record:
    """One raw record and where it came from, so a missing field names task, source and field."""

    task: str
    where: str
    index: int
    data: dict

    def get(self, field: str) -> Any:
        if self.data.get(field) is None:
            raise UserError(
                f"task {self.task!r}: {self.where}: record {self.index + 1} has no field {field!r} "
                f"(fields: {', '.join(sorted(self.data)) or 'none'})"
            )
        return self.data[field]

    def text(self, field: str) -> str:
        return str(self.get(field)).strip()


Converter = Callable[[Record, str], Example]


class BenchmarkTask(Task):
    stop_sequences = STOP_SEQUENCES

    def __init__(
        self,
        name: str,
        kind: str,
        source: Source,
        convert: Converter,
        splits: tuple[str, ...] = ("test",),
        fixed_shots: list[Example] | None = None,
        max_new_tokens: int = 512,
        method_shots: list[Example] | None = None,
    ):
        self.name, self.kind, self.source, self.convert = name, kind, source, convert
        self.answers = ANSWER_KINDS[kind]()
        self.splits, self.fixed_shots, self.default_max_new_tokens = splits, fixed_shots, max_new_tokens
        self.method_shots = method_shots

    def load(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise UserError(f"task {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        records, where = load_records(self.name, self.source, split)
        return [self.example(r, i, split, where) for i, r in enumerate(records)]

    def example(self, record: dict, index: int, split: str = "test", where: str = "input") -> Example:
        """The `Example` of one raw record (also used by `imm grade` on saved samples)."""
        return self.convert(Record(self.name, where, index, record), f"{split}-{index}")

    def shot_pool(self) -> list[Example]:
        return list(self.fixed_shots) if self.fixed_shots is not None else self.load(self.train_split)

    def fixed_exemplars(self) -> list[Example]:
        return list(self.method_shots) if self.method_shots is not None else self.shot_pool()

    def prompt(self, example: Example, shots: list[Example]) -> str:
        return cot_prompt(example, shots)

    def messages(self, example: Example, shots: list[Example]) -> list[dict[str, str]]:
        return cot_messages(example, shots, self.kind)

    def extract(self, completion: str) -> str | None:
        return self.answers.extract(cut_at_stop(completion, self.stop_sequences))

    def is_correct(self, extracted: str | None, example: Example) -> bool:
        return extracted is not None and self.answers.equal(extracted, example.answer)
