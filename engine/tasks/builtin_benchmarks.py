"""The real benchmarks of the method: in-domain GSM8K and MATH (train: the full MATH train split;
test: MATH-500), out-of-domain SVAMP, ASDiv, MAWPS, SAT-Math, MMLU-STEM and MathQA, and AQuA.

Each reads the fields as stored in ../shared/data (see its README) and on the hub data set named
here. Exemplars: GSM8K and MATH the method's ten fixed ones (`engine.tasks.exemplars.method_set`;
random shots from their train splits); the others the fixed pools of `engine.tasks.exemplars`.
"""
from __future__ import annotations

import re

from . import exemplars
from .answers import UNIT_RE, format_number, last_boxed
from .base import Example
from .jsonl_task import BenchmarkTask, Record
from .prompts import choice_question
from .sources import HubSplit, Source

LETTERS = "ABCDEFGHIJ"
CALCULATOR_RE = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations "<<2*3=6>>"
OPTION_RE = re.compile(r"(?:^|\s)([A-J])(?:\)\s*|\.\s+)")  # "A) 3 B) 5", "A)3", "A. 3"
# AQuA's list items "A)5(√3 + 1)"; one of them repeats its letter ("A)A)59").
LETTER_PREFIX_RE = re.compile(r"^\(?([A-J])\)\s*(?:\(?\1\)\s*)*")


def answer_sentence(answer: str) -> str:
    return f"The answer is {answer}."


def gsm8k_example(rec: Record, id: str) -> Example:
    body, sep, final = rec.text("answer").rpartition("####")
    answer = (final if sep else body).strip().replace(",", "")
    # as the method's exemplars show it: calculator annotations removed, a last line "The answer is N"
    rationale = f"{CALCULATOR_RE.sub('', body).strip()}\nThe answer is {answer}" if sep else ""
    return Example(id, rec.text("question"), answer, rationale)


def math_example(rec: Record, id: str) -> Example:
    solution = str(rec.data.get("solution") or "")
    # MATH-500 stores the answer; the full MATH train split only has it boxed in the solution.
    answer = rec.data.get("answer") or last_boxed(solution)
    answer = str(rec.get("answer") if answer is None else answer).strip()  # "" for an empty \boxed{}: never graded right
    meta = {k: rec.data[k] for k in ("subject", "level", "type") if k in rec.data}
    return Example(id, rec.text("problem"), answer, solution, meta)


def join_body(body: str, question: str) -> str:
    return f"{body} {question}" if body.endswith((".", "?", "!")) else f"{body}. {question}"


def svamp_example(rec: Record, id: str) -> Example:
    answer = format_number(float(rec.get("Answer")))
    return Example(id, join_body(rec.text("Body"), rec.text("Question")), answer)


def asdiv_example(rec: Record, id: str) -> Example:
    answer = UNIT_RE.sub("", rec.text("answer"))  # "9 (apples)" -> "9"
    return Example(id, join_body(rec.text("body"), rec.text("question")), answer)


def mawps_example(rec: Record, id: str) -> Example:
    return Example(id, rec.text("input"), format_number(float(rec.get("target"))))


def split_options(rec: Record, field: str) -> list[str]:
    """Options as a list of texts, from a list or from one string "A) .. B) ..", letters dropped."""
    value = rec.get(field)
    if isinstance(value, list):
        return [LETTER_PREFIX_RE.sub("", str(v)).strip() for v in value]
    parts = OPTION_RE.split(str(value))[1:]  # letter, text, letter, text, ...
    if not parts or "".join(parts[0::2]) != LETTERS[: len(parts) // 2]:
        return [str(value).strip()]  # unparsable: show as one block rather than guess
    return [t.strip() for t in parts[1::2]]


def sat_math_example(rec: Record, id: str) -> Example:
    return Example(id, choice_question(rec.text("question"), split_options(rec, "options")), rec.text("Answer"))


def mmlu_stem_example(rec: Record, id: str) -> Example:
    answer = LETTERS[int(rec.get("answer"))]
    meta = {"subject": rec.data.get("type") or rec.data.get("subject")}
    return Example(id, choice_question(rec.text("question"), split_options(rec, "choices")), answer, meta=meta)


def aqua_example(rec: Record, id: str) -> Example:
    return Example(id, choice_question(rec.text("question"), split_options(rec, "options")), rec.text("correct"))


MATHQA_OPTION_RE = re.compile(r"(?:^|,\s*)([a-e])\s*\)\s*")  # "a ) 38 , b ) 27.675 , ..."


def mathqa_options(rec: Record) -> list[str]:
    """MathQA's options "a ) 38 , b ) 27.675 , c ) 30 ..." (or a stringified list of such items)."""
    import ast

    raw = rec.get("options")
    if isinstance(raw, str) and raw.lstrip().startswith("["):
        raw = " , ".join(ast.literal_eval(raw))
    text = " , ".join(raw) if isinstance(raw, list) else str(raw)
    parts = MATHQA_OPTION_RE.split(text.strip())[1:]  # letter, text, letter, text, ...
    if "".join(parts[0::2]) != "abcde"[: len(parts) // 2]:
        return [text.strip()]  # unparsable: show as one block rather than guess
    return [t.strip() for t in parts[1::2]]


def mathqa_example(rec: Record, id: str) -> Example:
    meta = {"category": rec.data.get("category")}
    return Example(id, choice_question(rec.text("Problem"), mathqa_options(rec)), rec.text("correct").upper(), meta=meta)


def hub(name: str, config: str | None = None, **splits: str) -> dict[str, HubSplit]:
    return {ours: HubSplit(name, config, theirs) for ours, theirs in splits.items()}


def gsm8k_task() -> BenchmarkTask:
    source = Source(folder="gsm8k", hub=hub("openai/gsm8k", "main", train="train", test="test"))
    return BenchmarkTask("gsm8k", "numeric", source, gsm8k_example, splits=("train", "test"),
                         method_shots=exemplars.method_set("gsm8k"))


def math_task() -> BenchmarkTask:
    source = Source(folder="math500", split_folders={"train": "math"}, hub={
        "test": HubSplit("HuggingFaceH4/MATH-500", None, "test"),
        "train": HubSplit("DigitalLearningGmbH/MATH-lighteval", "default", "train"),
    })
    return BenchmarkTask("math", "math", source, math_example, ("train", "test"), max_new_tokens=1024,
                         method_shots=exemplars.method_set("math"))


def svamp_task() -> BenchmarkTask:
    source = Source(folder="svamp", hub=hub("tongyx361/svamp", test="test"))
    return BenchmarkTask("svamp", "numeric", source, svamp_example, fixed_shots=exemplars.NUMERIC)


def asdiv_task() -> BenchmarkTask:
    source = Source(folder="asdiv", hub=hub("EleutherAI/asdiv", test="validation"))
    return BenchmarkTask("asdiv", "number_or_text", source, asdiv_example, fixed_shots=exemplars.NUMERIC)


def mawps_task() -> BenchmarkTask:
    # No hub copy with these fields is known: local folder or a task path only.
    return BenchmarkTask("mawps", "numeric", Source(folder="mawps"), mawps_example, fixed_shots=exemplars.NUMERIC)


def sat_math_task() -> BenchmarkTask:
    # No hub copy with these fields is known: local folder or a task path only.
    source = Source(folder="sat_math")
    return BenchmarkTask("sat_math", "choice", source, sat_math_example, fixed_shots=exemplars.CHOICE)


def mmlu_stem_task() -> BenchmarkTask:
    source = Source(folder="mmlu_stem", hub=hub("TIGER-Lab/MMLU-STEM", test="test"))
    return BenchmarkTask("mmlu_stem", "choice", source, mmlu_stem_example, fixed_shots=exemplars.CHOICE)


def aqua_task() -> BenchmarkTask:
    source = Source(folder="aqua", hub=hub("deepmind/aqua_rat", "raw", test="test"))
    return BenchmarkTask("aqua", "choice", source, aqua_example, fixed_shots=exemplars.CHOICE)


def mathqa_task() -> BenchmarkTask:
    source = Source(folder="mathqa", hub=hub("allenai/math_qa", test="test"))
    return BenchmarkTask("mathqa", "choice", source, mathqa_example, fixed_shots=exemplars.CHOICE)


BENCHMARK_TASKS = {
    "gsm8k": gsm8k_task,
    "math": math_task,
    "svamp": svamp_task,
    "asdiv": asdiv_task,
    "mawps": mawps_task,
    "sat_math": sat_math_task,
    "mmlu_stem": mmlu_stem_task,
    "aqua": aqua_task,
    "mathqa": mathqa_task,
}
