"""Helpers the app's Pilot tests share."""
from __future__ import annotations

import time

from rich.cells import cell_len
from textual.css.query import NoMatches
from textual.widgets import DataTable


async def until(pilot, condition, timeout: float = 10.0, what: str = "condition"):
    """Let the app run (workers read in threads) until condition() gives a true value, and return
    it; a screen still composing (NoMatches) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except NoMatches:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


def screen_text(app) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips())


def cells(table: DataTable) -> list[list[str]]:
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


def tables_sized(app) -> bool:
    """Every DataTable of the screen stack has sized its columns to its cells: Textual measures
    new rows when the app is next idle, so a snapshot taken before shows columns too narrow."""
    for screen in app.screen_stack:
        for table in screen.query(DataTable):
            if table._new_rows or table._require_update_dimensions or table._updated_cells:
                return False
            for i, column in enumerate(table.ordered_columns):
                widest = max((cell_len(str(getattr(c, "plain", c))) for c in table.get_column_at(i)), default=0)
                if column.content_width < widest:
                    return False
    return True
