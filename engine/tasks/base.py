"""The task interface: loader + prompt builder + answer extraction + equivalence check.

A task turns raw records into `Example`s. The loop only talks to tasks through this interface, so
the embedded arithmetic tasks and the real benchmarks (GSM8K, MATH, ...) plug in the same way.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    id: str
    question: str  # the text shown after "Question:" (options included for multiple choice)
    answer: str  # gold final answer, canonical string ("68", "\\frac{1}{2}", "B")
    rationale: str = ""  # gold chain of thought ending in the answer sentence, when known
    meta: dict = field(default_factory=dict, compare=False)


def cut_at_stop(completion: str, stop_sequences: tuple[str, ...]) -> str:
    """The completion up to the first stop sequence (what a backend honouring them returns)."""
    end = min((i for i in (completion.find(s) for s in stop_sequences) if i >= 0), default=len(completion))
    return completion[:end]


class Task:
    """Base class. Subclasses set `name` and implement `load`, `prompt`, `extract` and `is_correct`."""

    name: str = ""
    splits: tuple[str, ...] = ("test",)
    # Split used for few-shot exemplars (and for self-improvement training questions).
    train_split: str = "train"
    default_max_new_tokens: int = 512
    # Generation stops at the first of these (the model starting the next exemplar).
    stop_sequences: tuple[str, ...] = ()

    def load(self, split: str) -> list[Example]:
        raise NotImplementedError

    def shot_pool(self) -> list[Example]:
        """The exemplars `shots_for` draws from; never the evaluated questions' split."""
        return self.load(self.train_split)

    def fixed_exemplars(self) -> list[Example]:
        """The exemplars of `exemplars = "fixed"`, in order: the first n are every question's shots."""
        return self.shot_pool()

    def prompt(self, example: Example, shots: list[Example]) -> str:
        """The full prompt: few-shot exemplars, then the question, ending where the model answers."""
        raise NotImplementedError

    def messages(self, example: Example, shots: list[Example]) -> list[dict[str, str]]:
        """The same content as chat messages, for `tokenizer.apply_chat_template(...,
        add_generation_prompt=True)`. Default: the whole prompt as one user turn."""
        return [{"role": "user", "content": self.prompt(example, shots)}]

    def extract(self, completion: str) -> str | None:
        """The final answer the completion commits to, or None."""
        raise NotImplementedError

    def is_correct(self, extracted: str | None, example: Example) -> bool:
        raise NotImplementedError

    def grade(self, completion: str, example: Example, stated_only: bool = False) -> tuple[str | None, bool]:
        """(extracted answer, correct). stated_only: read the answer only where the completion
        states it ("The answer is ...", "####", \\boxed{}); one that states none is wrong."""
        if stated_only:
            from .answers import stated_answer

            stated = stated_answer(completion)
            if stated is None:
                return None, False
            completion = stated
        extracted = self.extract(completion)
        return extracted, extracted is not None and self.is_correct(extracted, example)

    def shots_for(self, example: Example, pool: list[Example], n: int, seed: int) -> list[Example]:
        """n exemplars drawn reproducibly from pool (per seed and question), never the question itself."""
        if n <= 0 or not pool:
            return []
        rng = random.Random(f"{seed}:{self.name}:{example.id}")
        candidates = [e for e in pool if e.id != example.id and e.question != example.question]
        return rng.sample(candidates, min(n, len(candidates)))
