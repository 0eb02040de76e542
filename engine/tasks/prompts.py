"""The chain-of-thought prompt of the method's released generation script, as one prompt or as
chat messages.

With exemplars (the generation prompt; ../shared/paper/prompts.md):

    Below is an instruction that describes a task. Write a response that appropriately completes the request like given examples below:

    Question: <exemplar question>
    A: Let's think step by step.
    <exemplar rationale>
    The answer is N

    ... (each exemplar so, separated by a blank line)

    ### Instruction:
    <question>

    ### Response: Let's think step by step.

Without exemplars (the SFT prompt of every method, and the evaluation prompt at eval.fewshot = 0)
the header is the same script's zero-shot one, "... completes the request." with no reference to
examples, then the same instruction and response lines. Generation stops at the script's stop
strings in their colon forms (STOP_SEQUENCES).
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import Example, Task

HEADER = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
FEWSHOT_HEADER = HEADER.removesuffix(".") + " like given examples below:"
COT = "Let's think step by step."
# The released script's stop strings with their colons. Its list also has the bare words
# ("Question", "Response", ...), which cut sound reasoning short: "Questions Mark completed ..."
# (a GSM8K test gold rationale) would end at its first word.
STOP_SEQUENCES = ("Question:", "USER:", "ASSISTANT:", "Instruction:", "Response:")
# System message for chat-template models, per answer kind: how to state the final answer.
ANSWER_FORMATS = {
    "numeric": 'End with "The answer is N." where N is a number.',
    "number_or_text": 'End with "The answer is X." where X is the answer.',
    "math": "Put the final answer in \\boxed{}.",
    "choice": 'End with "The answer is (X)." where X is the letter of the correct option.',
}


def cot_prompt(example: Example, shots: list[Example]) -> str:
    ask = f"### Instruction:\n{example.question}\n\n### Response: {COT}"
    if not shots:
        return f"{HEADER}\n\n{ask}"
    demos = "".join(f"Question: {s.question}\nA: {COT}\n{s.rationale}\n\n" for s in shots)
    return f"{FEWSHOT_HEADER}\n\n{demos}{ask}"


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


def build_prompts(task: Task, examples: list, n_shots: int, mode: str, seed: int, chat: bool, field: str) -> list:
    """Few-shot prompts (or chat messages, for chat-template models) for each example: the task's
    first n fixed exemplars for every question (mode "fixed"), or n drawn per question from its
    pool (mode "random"). Fewer exemplars than n is a ConfigError naming `field` (e.g.
    generation.fewshot)."""
    render = task.messages if chat else task.prompt
    if n_shots == 0:
        return [render(ex, []) for ex in examples]
    pool = task.fixed_exemplars() if mode == "fixed" else task.shot_pool()
    if len(pool) < n_shots:
        raise ConfigError(field, n_shots, f"at most {len(pool)}: task {task.name!r} has {len(pool)} {mode} exemplars")
    if mode == "fixed":
        return [render(ex, pool[:n_shots]) for ex in examples]
    return [render(ex, task.shots_for(ex, pool, n_shots, seed)) for ex in examples]
