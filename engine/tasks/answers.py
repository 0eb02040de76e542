"""Final-answer extraction and equivalence for the three answer kinds: numeric, math, choice.

A completion commits to an answer through an anchor: "The answer is X", GSM8K's "#### X" or
"\\boxed{X}". The text after the last anchor (to the end of its line) is the answer phrase; a
numeric answer is the first number in it, else the last number anywhere in the completion.
That last fallback is lenient (evaluation uses it); `stated_answer` keeps only what an anchor
commits to, for the filter's strict rule (filter.answer = "stated").
"""
from __future__ import annotations

import math
import re

ANCHOR_RE = re.compile(r"\bthe (?:final )?answer is\s*:?|####", re.IGNORECASE)
# A number as people write it: -3, 1,234, 18.00, .5, 3/4 ("$" and units are left around it).
# The look-behind keeps "5-3" from reading as 5 and -3.
NUMBER_RE = re.compile(r"(?<![\d.])-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:/\d+)?")
LETTER_RE = re.compile(r"^[\s(\[{$*]*(?:option|choice)?\s*\(?([A-J])\b")
PAREN_LETTER_RE = re.compile(r"\(([A-J])\)")
WORD_RE = re.compile(r"[a-z0-9]+")
BARE_BOXED_RE = re.compile(r"\\boxed ([^\s${}]+)")  # "\boxed 9"
UNIT_RE = re.compile(r"\s*\([^)]*[A-Za-z][^)]*\)\s*$")  # ASDiv's " (apples)"


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), braces balanced, or of the brace-less
    \\boxed 9 (a few MATH train solutions); None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    bare = BARE_BOXED_RE.match(text, start)
    if bare:
        return bare.group(1)
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for i in range(brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[brace + 1 : i]
    return None


def answer_phrase(text: str) -> str | None:
    """The text after the last answer anchor up to the end of its line, else the last \\boxed{}."""
    anchors = list(ANCHOR_RE.finditer(text))
    if anchors:
        phrase = text[anchors[-1].end() :].split("\n", 1)[0].strip()
        return last_boxed(phrase) or phrase
    return last_boxed(text)


def stated_answer(text: str) -> str | None:
    """The part of a completion that states its answer: from the last anchor ("The answer is",
    "The final answer is", "####") to the end of that line, else from the last \\boxed{} on; None
    when the completion states none. Extracting from this part alone never falls back to a number
    or letter found elsewhere in the text (a truncated or rambling completion)."""
    anchors = list(ANCHOR_RE.finditer(text))
    if anchors:
        return text[anchors[-1].start() :].split("\n", 1)[0]
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    return text[start:] if start >= 0 else None


def to_number(text: str) -> float | None:
    """The value of one NUMBER_RE match ("1,234" -> 1234.0, "3/4" -> 0.75)."""
    num, _, den = text.replace(",", "").partition("/")
    try:
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return None


def format_number(value: float) -> str:
    """Canonical string: integers without ".0", others with up to 6 decimals."""
    if value.is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def numbers_equal(a: float, b: float) -> bool:
    # Absolute tolerance only: golds are exact decimals, and GSM8K's large integers must not
    # match their neighbours under a relative tolerance.
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-6)


def first_number(text: str) -> float | None:
    m = NUMBER_RE.search(text)
    return to_number(m.group()) if m else None


def last_number(text: str) -> float | None:
    matches = NUMBER_RE.findall(text)
    return to_number(matches[-1]) if matches else None


def gold_number(text: str) -> float | None:
    """The text as a number when it is exactly one ("18", "$1,000", "43.0", "9 (apples)",
    "-(1/3)"), else None."""
    core = UNIT_RE.sub("", text).replace("$", "").strip()
    core = re.sub(r"^(-?)\((.*)\)$", r"\1\2", core)
    return to_number(core) if NUMBER_RE.fullmatch(core) else None


class NumericAnswer:
    """Numbers: commas, "$", units, trailing ".", "18" == "18.0" == "18.00"."""

    kind = "numeric"

    def extract(self, completion: str) -> str | None:
        phrase = answer_phrase(completion)
        value = first_number(phrase) if phrase else None
        if value is None:
            value = last_number(completion)
        return None if value is None else format_number(value)

    def equal(self, extracted: str, gold: str) -> bool:
        a, b = to_number(extracted), gold_number(gold)
        return a is not None and b is not None and numbers_equal(a, b)


class NumberOrTextAnswer(NumericAnswer):
    """ASDiv: mostly numbers ("9 (apples)"), some words, times or ratios ("Mrs. Hilt", "3:30 p.m.",
    "3:4"). The extracted value is the answer phrase; a text gold must match its leading words."""

    kind = "number_or_text"

    def extract(self, completion: str) -> str | None:
        phrase = answer_phrase(completion)
        return phrase.rstrip(" .") if phrase else super().extract(completion)

    def equal(self, extracted: str, gold: str) -> bool:
        gold_value = gold_number(gold)
        if gold_value is not None:
            value = gold_number(extracted)
            value = first_number(extracted) if value is None else value
            return value is not None and numbers_equal(value, gold_value)
        want = words(gold)
        return bool(want) and words(extracted)[: len(want)] == want


def words(text: str) -> list[str]:
    """Lower-case words and digit runs, leading articles dropped ("The 6th" -> ["6th"])."""
    tokens = WORD_RE.findall(text.lower())
    return tokens[1:] if tokens[:1] in (["the"], ["a"], ["an"]) else tokens


class ChoiceAnswer:
    """Multiple choice: a letter after the anchor ("The answer is (B)", "answer is: B) 12"), else
    the last parenthesised letter "(C)" in the completion."""

    kind = "choice"

    def extract(self, completion: str) -> str | None:
        phrase = answer_phrase(completion)
        m = LETTER_RE.match(phrase) if phrase else None
        if m:
            return m.group(1)
        letters = PAREN_LETTER_RE.findall(completion)
        return letters[-1] if letters else None

    def equal(self, extracted: str, gold: str) -> bool:
        return extracted.strip().upper() == gold.strip().upper()


class MathAnswer:
    """LaTeX answers (fractions, intervals, expressions) compared by math-verify."""

    kind = "math"

    def extract(self, completion: str) -> str | None:
        # \boxed{} first: MATH solutions box the answer, then may say "our answer is correct".
        phrase = last_boxed(completion) or answer_phrase(completion)
        if not phrase:
            return None
        phrase = phrase.rstrip(" .")
        if phrase.startswith("$") and phrase.endswith("$"):
            phrase = phrase.strip("$").strip()
        return phrase or None

    def equal(self, extracted: str, gold: str) -> bool:
        from .math_equiv import math_equal

        return math_equal(extracted, gold)


ANSWER_KINDS = {cls.kind: cls for cls in (NumericAnswer, NumberOrTextAnswer, ChoiceAnswer, MathAnswer)}
