"""Finding a run by its id or a unique prefix of it: one rule for the writer (Store), the readers
(Reader, the API) and the engine's commands."""
from __future__ import annotations

from collections.abc import Callable

from ..errors import RunStateError

Query = Callable[[str, list], list[dict]]


def match_run(query: Query, run: str) -> dict | None:
    """The run with this id, or the only run whose id starts with it (LIKE with its wildcards
    escaped: a prefix `a_b` matches only ids that start with `a_b`)."""
    rows = query("SELECT * FROM runs WHERE id = ?", [run])
    if rows:
        return rows[0]
    escaped = run.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = query("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\'", [escaped + "%"])
    return rows[0] if len(rows) == 1 else None


def require_run(row: dict | None, run: str, home) -> dict:
    """`row`, or the error that names the run and the home when there is none."""
    if row is None:
        raise RunStateError(f"no run {run!r} in {home}")
    return row
