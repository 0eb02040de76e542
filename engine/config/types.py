"""The value types of the schema: strict scalars, bounded integers, ranges with their own wording
and choices. A failed check raises PydanticCustomError("imm", ...) carrying the "allowed" text,
which engine.config.messages turns into the project's "field: got X; allowed: Y"."""
from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Sequence
from typing import Annotated

from annotated_types import Ge, Interval, Le
from pydantic import AfterValidator, BeforeValidator, Strict
from pydantic_core import PydanticCustomError

from ..errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy's and DARE's seeds are 32-bit
MAX_WORKERS = 1024
MAX_THREADS = 1024
# Run, preset and custom task names become parts of run ids, folder names and log lines.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_ALLOWED = "1-64 ASCII letters, digits, '_', '-' or '.', starting with a letter or digit"


def refuse(allowed: str):
    """The error a validator raises: its text is the "allowed" part of the message."""
    return PydanticCustomError("imm", "{allowed}", {"allowed": allowed})


class IntMax:
    """Marks the upper bound of a field that is not a plain bounded int ("auto" or a count), so
    INT_MAX lists it; pydantic ignores metadata it does not know."""

    def __init__(self, le: int):
        self.le = le


# An integer: TOML's integers only (no bool, no 1.0). Bounds go beside it: Interval(ge=.., le=..).
Count = Annotated[int, Strict()]


def _int_as_float(value):
    """Integers pass as numbers; one too large for a float is infinite (then refused as such)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if abs(value) < 2**1023 else math.inf
    return value


def _text(value):
    if not isinstance(value, str):
        raise refuse("a string")
    return value


# A finite float (the schema's allow_inf_nan=False refuses nan and inf).
Number = Annotated[float, BeforeValidator(_int_as_float), Strict()]
Flag = Annotated[bool, Strict()]


# Before a choice (an enum, OneOf): the value must be text (a table or a number is "a string").
text_first = BeforeValidator(_text)
Text = Annotated[str, text_first]


def OneOf(*allowed) -> AfterValidator:
    """One of a few literal values (strings or integers) that need no enum of their own."""
    def check(value):
        if value not in allowed or type(value) is not type(allowed[0]):
            raise refuse("one of " + ", ".join(map(str, allowed)))
        return value

    return AfterValidator(check)


# A range check with its own wording: the predicate and the text, also used outside the schema
# (imm sweep's --alpha and --drop) through `check`.
Range = tuple[Callable[[float], bool], str]
ALPHA: Range = (lambda v: 0 <= v <= 1, "a number in [0, 1]")
DROP_RATE: Range = (lambda v: 0 <= v < 1, "a number in [0, 1)")  # DARE's p: 1 would divide by zero


def within(rule: Range) -> AfterValidator:
    ok, allowed = rule

    def check(value):
        if not ok(value):
            raise refuse(allowed)
        return value

    return AfterValidator(check)


def check(path: str, value, rule: Range) -> None:
    """A rule of the schema applied to a value given elsewhere (a command-line flag)."""
    if not rule[0](value):
        raise ConfigError(path, value, rule[1])


def check_alpha(path: str, value: float) -> None:
    """The weight of the base model in the merge (also what `imm sweep --alpha` takes)."""
    check(path, value, ALPHA)


def check_drop_rate(path: str, value: float) -> None:
    """DARE's drop probability p (also what `imm sweep --drop` takes)."""
    check(path, value, DROP_RATE)


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise refuse(NAME_ALLOWED)
    return value


Name = Annotated[str, text_first, AfterValidator(_name)]


def check_name(path: str, value: str) -> None:
    """The one rule for run, preset and custom task names."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ConfigError(path, value, NAME_ALLOWED)


def auto_or_count(high: int, allowed: str) -> BeforeValidator:
    """"auto" or a count in [1, high] (workers, threads); `allowed` says so. Put IntMax(high)
    beside it, so INT_MAX lists the bound."""
    def check(value):
        if value != "auto" and not (type(value) is int and 1 <= value <= high):
            raise refuse(allowed)
        return value

    return BeforeValidator(check)


def parse_scalar(text: str):
    """A --set value as TOML ("0.3", "true", "[1, 2]", '"x"'); anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def as_list(what: str) -> BeforeValidator:
    """A list; "a,b" (a --set value) splits at the commas, its items read as TOML values unless
    `what` is "strings"; anything else is refused as "a list of `what`"."""
    def split(value):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            if what != "strings":
                value = [parse_scalar(v) for v in value]
        if not isinstance(value, list):
            raise refuse(f"a list of {what}")
        return value

    return BeforeValidator(split)


def non_empty(allowed: str) -> AfterValidator:
    def filled(value: Sequence):
        if not value:
            raise refuse(allowed)
        return value

    return AfterValidator(filled)


__all__ = ["ALPHA", "DROP_RATE", "Count", "Flag", "Ge", "Interval", "IntMax", "Le", "MAX_THREADS", "MAX_WORKERS", "NAME_ALLOWED",
           "Name", "Number", "OneOf", "SEED_MAX", "Text", "as_list", "auto_or_count", "check", "check_alpha",
           "check_drop_rate", "check_name", "non_empty", "refuse", "text_first", "within"]
