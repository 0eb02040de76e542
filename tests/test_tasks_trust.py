"""Grader trust on the real benchmark data (../shared/data): golds grade correct, altered golds wrong."""
from __future__ import annotations

import json
import re

import pytest

from engine.tasks import get_task
from engine.tasks.answers import gold_number, format_number
from engine.tasks.sources import PROJECT_ROOT

DATA = PROJECT_ROOT.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"no benchmark data at {DATA}")
OOD = ["svamp", "asdiv", "mawps", "sat_math", "mmlu_stem", "aqua", "mathqa"]


@pytest.fixture(autouse=True)
def data_dir(monkeypatch):
    monkeypatch.setenv("IMM_DATA_DIR", str(DATA))


def as_model_would(answer: str) -> str:
    return f"Let's think step by step. We combine 3 and 7 as the question says. The answer is {answer}."


def other_answer(task, gold: str) -> str:
    """A different final answer of the same shape: the next letter, or the number plus one."""
    if task.kind == "choice":
        return "B" if gold == "A" else "A"
    value = gold_number(gold)
    return format_number(value + 1) if value is not None else "Nobody"


def test_every_gsm8k_gold_rationale_grades_correct():
    task = get_task("gsm8k")
    raw = [json.loads(line)["answer"] for line in (DATA / "gsm8k" / "test.jsonl").open()]
    examples = task.load("test")
    assert len(examples) == 1319
    assert sum(task.grade(r, e)[1] for r, e in zip(raw, examples)) == 1319
    # The cleaned rationale used for exemplars ("... The answer is 18.") grades the same.
    assert all(task.grade(e.rationale, e)[1] for e in examples)
    changed = [re.sub(r"#### .*$", f"#### {other_answer(task, e.answer)}", r) for r, e in zip(raw, examples)]
    assert not any(task.grade(c, e)[1] for c, e in zip(changed, examples))


def test_math500_gold_solutions_grade_correct_and_other_answers_wrong():
    task = get_task("math")
    examples = task.load("test")
    assert len(examples) == 500
    failures = [e.id for e in examples if not task.grade(e.rationale, e)[1]]
    assert failures == []  # the issue allows 1%; none fail today
    # Each solution graded against the next problem's answer, where the two answers differ.
    pairs = [(a, b) for a, b in zip(examples, examples[1:] + examples[:1]) if a.answer != b.answer]
    accepted = [(a.answer, b.answer) for a, b in pairs if task.grade(a.rationale, b)[1]]
    # math-verify reads an equation's right side: "x=5" equals "5", rightly.
    assert accepted == [("5", "x=5")]


@pytest.mark.parametrize("name", OOD)
def test_ood_golds_written_as_a_model_would_grade_correct(name):
    task = get_task(name)
    examples = task.load("test")
    wrap = (lambda a: f"({a})") if task.kind == "choice" else str
    assert all(task.grade(as_model_would(wrap(e.answer)), e)[1] for e in examples)


@pytest.mark.parametrize("name", OOD)
def test_ood_golds_changed_or_missing_grade_wrong(name):
    task = get_task(name)
    examples = task.load("test")
    wrap = (lambda a: f"({a})") if task.kind == "choice" else str
    assert not any(task.grade(as_model_would(wrap(other_answer(task, e.answer))), e)[1] for e in examples)
    missing = "Let's think step by step. The answer is ."
    assert not any(task.grade(missing, e)[1] for e in examples)


def test_dataset_sizes_match_the_data_readme():
    sizes = {"svamp": 1000, "asdiv": 2215, "mawps": 2065, "sat_math": 32, "mmlu_stem": 3018, "aqua": 254, "mathqa": 2985}
    assert {n: len(get_task(n).load("test")) for n in sizes} == sizes
    assert len(get_task("gsm8k").load("train")) == 7473 and len(get_task("math").load("train")) == 7500


def test_choice_questions_show_every_option():
    # sat_math stores its options as one string "A) .. B) .." (or "A. .."), aqua as "A)..." items.
    for name, n_options in [("sat_math", 4), ("aqua", 5)]:
        for e in get_task(name).load("test"):
            shown = e.question.split("\nAnswer Choices: ")[1]
            starts = [shown.find(f"({letter}) ") for letter in "ABCDE"[:n_options]]
            assert starts[0] == 0 and starts == sorted(starts), (name, e.id)
            assert not re.match(r"\(A\) \(?A[).]", shown), (name, e.id)  # letter not shown twice
