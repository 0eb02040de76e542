"""Fixed in-context exemplars.

GSM8K and MATH: ten each (`exemplar_sets/{gsm8k,math}.json`; the method prints three of each and
says ten). The first three are the ones the method's tables print (../shared/paper/prompts.md); the
other seven were drawn once with random.Random(0).sample(..., 7) from the train split's lines whose
question is in no test split (GSM8K test, MATH-500), GSM8K rationales of at most 400 characters,
MATH levels 1-3 with solutions of at most 600 characters and a boxed answer, the three excluded.
Those limits make the seven shorter and easier than the printed three (MATH level 5), a bias the
README states ("Where the paper is silent"). Each record names its source line. Rationales: the
gold one, GSM8K calculator annotations removed, then a last line "The answer is X" (as the
method's tables show them).

The other pools serve tasks without a train split of their own (SVAMP, ASDiv, MAWPS, SAT-Math,
MMLU-STEM, AQuA, MathQA, custom tasks without train.jsonl): written for this project, none taken
from any evaluated set, so an exemplar can never be the evaluated question.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import Example
from .prompts import choice_question

SETS = Path(__file__).with_name("exemplar_sets")


def method_set(name: str) -> list[Example]:
    """The method's ten exemplars of GSM8K or MATH, in their stored order."""
    records = json.loads((SETS / f"{name}.json").read_text(encoding="utf-8"))
    return [Example(id=f"fixed-{name}-{i}", question=r["question"], answer=r["answer"], rationale=r["rationale"],
                    meta={"source": r["source"]}) for i, r in enumerate(records)]


def _pool(kind: str, items: list[tuple[str, str, str]]) -> list[Example]:
    return [
        Example(id=f"fixed-{kind}-{i}", question=q, answer=a, rationale=r) for i, (q, r, a) in enumerate(items)
    ]


NUMERIC = _pool("numeric", [
    ("A baker made 24 muffins and sold 15 of them. How many muffins are left?",
     "The baker started with 24 muffins and sold 15, so 24 - 15 = 9 are left. The answer is 9.", "9"),
    ("Tom has 3 boxes with 12 pencils in each box. How many pencils does he have?",
     "Each box holds 12 pencils and there are 3 boxes, so 3 * 12 = 36 pencils. The answer is 36.", "36"),
    ("A ribbon 45 meters long is cut into 5 equal pieces. How long is each piece?",
     "The ribbon is divided into 5 equal parts, so each is 45 / 5 = 9 meters. The answer is 9.", "9"),
    ("Mia read 18 pages on Monday and twice as many on Tuesday. How many pages did she read in all?",
     "On Tuesday she read 2 * 18 = 36 pages. In all she read 18 + 36 = 54 pages. The answer is 54.", "54"),
    ("A shirt costs $20 and is sold at a 25% discount. What is the sale price in dollars?",
     "The discount is 25% of 20, which is 0.25 * 20 = 5 dollars. The sale price is 20 - 5 = 15 dollars. "
     "The answer is 15.", "15"),
    ("There are 7 rows of chairs with 9 chairs in each row. 10 chairs are taken. How many are free?",
     "There are 7 * 9 = 63 chairs. With 10 taken, 63 - 10 = 53 are free. The answer is 53.", "53"),
    ("Sam saved $4.50 each week for 6 weeks. How much did he save?",
     "He saved 4.50 dollars a week for 6 weeks, so 4.50 * 6 = 27 dollars. The answer is 27.", "27"),
    ("A train travels 240 km in 3 hours. What is its average speed in km per hour?",
     "Speed is distance over time: 240 / 3 = 80 km per hour. The answer is 80.", "80"),
])

MATH = _pool("math", [
    ("Simplify $\\frac{12}{18}$.",
     "Both 12 and 18 are divisible by 6, so $\\frac{12}{18} = \\frac{2}{3}$. "
     "The answer is $\\boxed{\\frac{2}{3}}$.", "\\frac{2}{3}"),
    ("Solve $2x + 5 = 17$ for $x$.",
     "Subtracting 5 from both sides gives $2x = 12$, so $x = 6$. The answer is $\\boxed{6}$.", "6"),
    ("For which real $x$ is $x^2 < 9$? Give your answer in interval notation.",
     "$x^2 < 9$ holds exactly when $|x| < 3$, that is $-3 < x < 3$. The answer is $\\boxed{(-3, 3)}$.",
     "(-3, 3)"),
    ("What is the distance between the points $(1, 2)$ and $(4, 6)$?",
     "The distance is $\\sqrt{(4-1)^2 + (6-2)^2} = \\sqrt{9 + 16} = \\sqrt{25} = 5$. "
     "The answer is $\\boxed{5}$.", "5"),
])

CHOICE = _pool("choice", [
    (choice_question("If 3x - 7 = 11, what is the value of x?", ["4", "5", "6", "7"]),
     "Adding 7 to both sides gives 3x = 18, so x = 6, which is option (C). The answer is (C).", "C"),
    (choice_question("A car uses 8 liters of fuel per 100 km. How many liters does it use for 250 km?",
                     ["20", "16", "18", "22", "25"]),
     "250 km is 2.5 times 100 km, so it uses 2.5 * 8 = 20 liters, option (A). The answer is (A).", "A"),
    (choice_question("Which of these numbers is prime?", ["21", "29", "27", "33"]),
     "21 = 3 * 7, 27 = 3 * 9 and 33 = 3 * 11 are composite; 29 has no divisor other than 1 and "
     "itself. The answer is (B).", "B"),
    (choice_question("What is the area of a circle with radius 3?", ["3π", "6π", "12π", "9π"]),
     "The area is π r^2 = π * 3^2 = 9π, option (D). The answer is (D).", "D"),
])
