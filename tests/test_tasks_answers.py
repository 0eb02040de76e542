"""Answer extraction and equivalence of the numeric, number-or-text, choice and math kinds."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.tasks.answers import ChoiceAnswer, MathAnswer, NumberOrTextAnswer, NumericAnswer
from engine.tasks.base import cut_at_stop
from engine.tasks.prompts import STOP_SEQUENCES


@pytest.mark.parametrize("completion, extracted", [
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
    ("The answer is $1,234.", "1234"),
    ("The answer is 18.0 dollars.", "18"),
    ("So the final answer is: 18.50", "18.5"),
    ("The answer is -3.", "-3"),
    ("The answer is 3/4.", "0.75"),
    ("The answer is \\boxed{42}.", "42"),
    ("First 5-3 = 2, then 2 + 10 = 12 apples", "12"),  # last-number fallback; "-3" is not a number here
    ("Half of 1,000,000 is 500,000", "500000"),
    ("Nothing to see", None),
])
def test_numeric_extraction(completion, extracted):
    assert NumericAnswer().extract(completion) == extracted


@pytest.mark.parametrize("extracted, gold, equal", [
    ("18", "18", True), ("18", "18.0", True), ("18.00", "18", True), ("1234", "1,234", True),
    ("9", "9 (apples)", True), ("43", "43.0", True), ("11.5", "11.5", True),
    ("19", "18", False), ("1000001", "1000000", False), ("11.51", "11.5", False),
])
def test_numeric_equivalence(extracted, gold, equal):
    assert NumericAnswer().equal(extracted, gold) is equal


@pytest.mark.parametrize("completion, gold, correct", [
    ("The answer is Mrs. Hilt.", "Mrs. Hilt", True),
    ("The answer is 3:30 p.m.", "3:30 p.m.", True),
    ("The answer is 3:4.", "3:4", True),
    ("The answer is no.", "No", True),
    ("The answer is not enough.", "No", False),
    ("The answer is 9 apples.", "9", True),
    ("The answer is -1/3.", "-(1/3)", True),
    ("The answer is John.", "Jim", False),
])
def test_number_or_text(completion, gold, correct):
    kind = NumberOrTextAnswer()
    assert kind.equal(kind.extract(completion), gold) is correct


@pytest.mark.parametrize("completion, letter", [
    ("So the answer is (B).", "B"),
    ("The answer is C) 12", "C"),
    ("The answer is: D", "D"),
    ("Option (A) is too small, (E) fits.", "E"),  # fallback: last parenthesised letter
    ("A car drives 5 km.", None),  # a capital A in prose is not an answer
    ("The answer is .", None),
])
def test_choice_extraction(completion, letter):
    assert ChoiceAnswer().extract(completion) == letter


@pytest.mark.parametrize("completion, gold, correct", [
    ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac12", True),
    ("The answer is $0.5$.", "\\frac{1}{2}", True),
    ("The interval is $\\boxed{(-3, 3)}$.", "(-3,3)", True),
    ("The interval is $\\boxed{[-3, 3)}$.", "(-3,3)", False),
    ("We get \\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),
    ("We get \\boxed{3}", "4", False),
])
def test_math_equivalence(completion, gold, correct):
    kind = MathAnswer()
    assert kind.equal(kind.extract(completion), gold) is correct


def test_math_grading_works_in_a_worker_thread():
    kind = MathAnswer()
    cases = [("\\boxed{\\frac{2}{4}}", "\\frac12"), ("\\boxed{7}", "8")]

    def grade_all():
        return [kind.equal(kind.extract(c), g) for c, g in cases]

    with ThreadPoolExecutor(2) as pool:
        assert pool.submit(grade_all).result() == [True, False] == grade_all()


def test_generation_is_cut_where_the_next_exemplar_starts():
    text = "3 + 4 = 7. The answer is 7.\n\n### Instruction:\n1+1?\n\n### Response: The answer is 2."
    assert cut_at_stop(text, STOP_SEQUENCES) == "3 + 4 = 7. The answer is 7.\n\n### "
    assert cut_at_stop("7 apples.\nThe answer is 7\n\nQuestion: next", STOP_SEQUENCES) == "7 apples.\nThe answer is 7\n\n"
