"""pydantic's validation errors in the project's words ("field: got X; allowed: Y"), and the
integer bounds read back from the schema (INT_MAX: what a test and `imm sweep` check against)."""
from __future__ import annotations

import dataclasses
import typing
from enum import Enum

from annotated_types import Interval, Le
from pydantic import ValidationError

from ..errors import ConfigError
from .types import IntMax

_TYPES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "dict_type": "a table", "dataclass_type": "a table of settings", "dataclass_args_type": "a table of settings",
}


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part or '""'  # TOML allows an empty key; the message must still name it
            out += f".{shown}" if out else shown
    return out


def _section(root, loc: tuple):
    """The dataclass that holds the field at `loc` (for the known keys of an unknown one)."""
    cls = root
    for part in loc[:-1]:
        hint = typing.get_type_hints(cls).get(part)
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return None
        cls = hint
    return cls


def _choices(root, loc: tuple) -> list[str]:
    cls = _section(root, loc)
    hint = typing.get_type_hints(cls)[loc[-1]] if cls else None
    return [m.value for m in hint] if isinstance(hint, type) and issubclass(hint, Enum) else []


def _allowed(root, err) -> str:
    kind, ctx, loc = err["type"], err.get("ctx") or {}, err["loc"]
    if kind == "imm":
        return ctx["allowed"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        cls = _section(root, loc)
        return f"one of the known keys {sorted(f.name for f in dataclasses.fields(cls))}" if cls else "a known key"
    if kind == "greater_than_equal":
        return f">= {ctx['ge']}"
    if kind == "less_than_equal":
        return f"<= {ctx['le']} (the most imm allows)"
    if kind == "enum":
        return "one of " + ", ".join(_choices(root, loc))
    return _TYPES.get(kind, err["msg"])


def field_errors(exc: ValidationError, root) -> list[ConfigError]:
    """Each error of a validation of `root` (a schema dataclass) as a ConfigError."""
    return [ConfigError(_path(err["loc"]), err.get("input"), _allowed(root, err))
            for err in exc.errors(include_url=False)]


def _upper_bound(hint) -> int | None:
    for item in getattr(hint, "__metadata__", ()):
        if isinstance(item, (Le, Interval, IntMax)) and item.le is not None:
            return int(item.le)  # type: ignore[call-overload]  # annotated_types types it as SupportsLe
    return None


def int_bounds(cls, prefix: str = "") -> dict[str, int]:
    """field path -> the upper bound of every integer field (and integer list) of the schema."""
    out = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        bare = typing.get_origin(hint) is typing.Annotated and hint.__origin__ or hint
        if isinstance(bare, type) and dataclasses.is_dataclass(bare):
            out.update(int_bounds(bare, f"{prefix}{name}."))
            continue
        bound = _upper_bound(typing.get_args(bare)[0] if typing.get_origin(bare) is list else hint)
        if bound is not None:
            out[prefix + name] = bound
    return out
