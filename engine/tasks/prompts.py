"""The few-shot chain-of-thought format of the method, as one prompt or as chat messages.

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    Question: <exemplar question>

    ### Response:
    A: Let's think step by step. <exemplar rationale ending "The answer is N.">

    ### Instruction:
    Question: <evaluated question>

    ### Response:
    A: Let's think step by step.

Generation stops where the model starts another instruction (STOP_SEQUENCES).
"""
from __future__ import annotations

from .base import Example

HEADER = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
COT = "Let's think step by step."
STOP_SEQUENCES = ("### Instruction", "\nQuestion:")
# System message for chat-template models, per answer kind: how to state the final answer.
ANSWER_FORMATS = {
    "numeric": 'End with "The answer is N." where N is a number.',
    "number_or_text": 'End with "The answer is X." where X is the answer.',
    "math": "Put the final answer in \\boxed{}.",
    "choice": 'End with "The answer is (X)." where X is the letter of the correct option.',
}


def cot_prompt(example: Example, shots: list[Example]) -> str:
    turns = [
        f"### Instruction:\nQuestion: {s.question}\n\n### Response:\nA: {COT} {s.rationale}" for s in shots
    ]
    turns.append(f"### Instruction:\nQuestion: {example.question}\n\n### Response:\nA: {COT}")
    return "\n\n".join([HEADER, *turns])


def cot_messages(example: Example, shots: list[Example], kind: str) -> list[dict[str, str]]:
    system = f"Solve the problem. Think step by step. {ANSWER_FORMATS[kind]}"
    messages = [{"role": "system", "content": system}]
    for s in shots:
        messages.append({"role": "user", "content": s.question})
        messages.append({"role": "assistant", "content": f"{COT} {s.rationale}"})
    messages.append({"role": "user", "content": example.question})
    return messages


def choice_question(question: str, options: list[str]) -> str:
    """The question followed by its options: 'Answer Choices: (A) 12 (B) 14 ...'."""
    letters = "ABCDEFGHIJ"
    shown = " ".join(f"({letters[i]}) {text}" for i, text in enumerate(options))
    return f"{question}\nAnswer Choices: {shown}"
