"""Synthetic arithmetic tasks of the embedded default, with a short chain of thought.

Question "17+8-12", rationale "17+8=25. 25-12=13. The answer is 13.": the model adds left to
right. Families differ in operand count and operations, so the in-domain task (3-term sums) and
the out-of-domain ones (4-term sums, mixed + / -) test whether what self-improvement learnt
carries over. Splits are generated from a fixed seed, so every machine sees the same questions.
"""
from __future__ import annotations

import random
import re

from .base import Example, Task
from .prompts import cot_messages

ANSWER_RE = re.compile(r"The answer is (-?\d+)")
NUMBER_RE = re.compile(r"-?\d+")
SPLIT_SIZES = {"train": 4000, "test": 500}


def solve(operands: list[int], ops: list[str]) -> tuple[str, int]:
    """The left-to-right chain of thought for operands joined by ops, and the result."""
    steps, acc = [], operands[0]
    for op, x in zip(ops, operands[1:]):
        new = acc + x if op == "+" else acc - x
        steps.append(f"{acc}{op}{x}={new}.")
        acc = new
    return " ".join(steps) + f" The answer is {acc}.", acc


class ArithTask(Task):
    splits = ("train", "test")
    default_max_new_tokens = 64
    stop_sequences = ("\n",)

    def __init__(self, name: str, n_operands: int, ops: str, low: int = 1, high: int = 25):
        self.name, self.n_operands, self.ops, self.low, self.high = name, n_operands, ops, low, high

    def sample(self, rng: random.Random) -> Example:
        operands = [rng.randint(self.low, self.high) for _ in range(self.n_operands)]
        ops = [rng.choice(self.ops) for _ in range(self.n_operands - 1)]
        question = str(operands[0]) + "".join(f"{op}{x}" for op, x in zip(ops, operands[1:]))
        rationale, result = solve(operands, ops)
        return Example(id=question, question=question, answer=str(result), rationale=rationale)

    def split_size(self, split: str) -> int:
        """At most SPLIT_SIZES[split], and never more than the family's distinct questions allow."""
        space = (self.high - self.low + 1) ** self.n_operands * len(self.ops) ** (self.n_operands - 1)
        test = min(SPLIT_SIZES["test"], space // 4)
        return test if split == "test" else min(SPLIT_SIZES["train"], (space - test) // 2)

    def load(self, split: str) -> list[Example]:
        if split not in SPLIT_SIZES:
            raise KeyError(split)
        # The test split is drawn first from its own seed; train skips any test question.
        rng = random.Random(f"{self.name}:{split}")
        held_out = {e.question for e in self.load("test")} if split == "train" else set()
        seen, out = set(held_out), []  # type: set[str], list[Example]
        while len(out) < self.split_size(split):
            ex = self.sample(rng)
            if ex.question not in seen:
                seen.add(ex.question)
                out.append(ex)
        return out

    def prompt(self, example: Example, shots: list[Example]) -> str:
        demos = "".join(f"Q: {s.question}\nA: {s.rationale}\n\n" for s in shots)
        return f"{demos}Q: {example.question}\nA: "

    def messages(self, example: Example, shots: list[Example]) -> list[dict[str, str]]:
        # A chat model gets the benchmarks' chat form (answer-format system line, exemplars as
        # turns): given the Q:/A: text as one user turn, SmolLM2-135M-Instruct answered "A: 5" or
        # wrote a system prompt of its own instead in half of its samples.
        return cot_messages(example, shots, "numeric")

    def extract(self, completion: str) -> str | None:
        m = ANSWER_RE.search(completion)
        if m:
            return m.group(1)
        numbers = NUMBER_RE.findall(completion)
        return numbers[-1] if numbers else None

    def is_correct(self, extracted: str | None, example: Example) -> bool:
        return extracted is not None and extracted.strip() == example.answer


ARITH_TASKS = {
    "arith_add2": lambda: ArithTask("arith_add2", 2, "+"),
    "arith_add3": lambda: ArithTask("arith_add3", 3, "+"),
    "arith_add4": lambda: ArithTask("arith_add4", 4, "+"),
    "arith_mix3": lambda: ArithTask("arith_mix3", 3, "+-"),
}
