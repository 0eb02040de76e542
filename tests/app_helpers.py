"""Helpers the app's Pilot tests share."""
from __future__ import annotations

import time

from rich.cells import cell_len
from textual.css.query import NoMatches
from textual.widgets import DataTable
from textual.worker import WorkerState


async def until(pilot, condition, timeout: float = 60.0, what: str = "condition"):
    """Let the app run (workers read in threads) until condition() gives a true value, and return
    it; a screen still composing (NoMatches) counts as not yet. Tests wait for what they need this
    way, never for a fixed time: the timeout only bounds a hang (conftest.wait_until outside Pilot)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except NoMatches:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


async def until_shown(pilot, *texts: str, what: str = "") -> str:
    """Wait until every one of texts is on the screen at once and return the screen's text: parts
    of a screen arrive from separate reads, so a test never checks one part after waiting for
    another."""
    return await until(pilot, lambda: all(t in (s := screen_text(pilot.app)) for t in texts) and s,
                       what=what or " and ".join(map(repr, texts)))


def screen_text(app) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips())


def cells(table: DataTable) -> list[list[str]]:
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


def settled(app) -> bool:
    """Nothing read yet that would change the screen: no worker pending or running, and every table
    sized to its cells and drawn so. A snapshot waits for this (pytest-textual-snapshot then lets
    the app idle)."""
    busy = any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers)
    return not busy and tables_sized(app) and tables_drawn_whole(app)


def row_drawn_whole(line: str, row: list[str]) -> bool:
    """The drawn line shows the row's cells whole and in order; the last one seen may be cut by
    the edge of the view (never a cell in the middle, as a column drawn before it was measured is)."""
    at = 0
    for cell in (c.strip() for c in row):
        found = line.find(cell, at)
        if found < 0:
            rest = line[at:].strip()  # nothing left: the cells beyond are past the view's edge
            return not rest or (cell.startswith(rest) and not line.endswith(" "))
        at = found + len(cell)
    return True


def tables_drawn_whole(app) -> bool:
    """The first row of every table on screen, as the screen draws it, shows its cells whole."""
    lines = screen_text(app).splitlines()
    for table in app.screen.query(DataTable):
        region = table.region
        if not table.row_count or not region or table.scroll_offset.y or not table.show_header:
            continue
        y = region.y + table.header_height
        if y >= min(region.bottom, len(lines)):
            continue
        drawn = lines[y][region.x:region.right]
        if not row_drawn_whole(drawn, [str(getattr(c, "plain", c)) for c in table.get_row_at(0)]):
            return False
    return True


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
