"""A run's stages as a grid: one row per iteration, one column per stage, each cell its status
(✓ done, ▶ running, · pending, ✗ failed, ⏸ running when its engine died) and how long it took; failed stages' errors below."""
from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine import api

from .fmt import STATUS_STYLE, duration
from .plain import clean

MARK = {"done": "✓", "running": "▶", "pending": "·", "failed": "✗"}
ORDER = {str(s): i for i, s in enumerate(api.Stage)}  # build, generate, filter, sft, merge, eval, analyze


def stage_cell(row: api.StageRow, now: float, live: bool) -> Text:
    if row.status == "running" and not live:
        return Text("⏸", style=STATUS_STYLE["stale"])  # its engine is gone: no clock runs
    took = row.seconds if row.status != "running" else (row.spent + now - row.started if row.started else None)
    text = Text(MARK.get(row.status, "?"), style=STATUS_STYLE.get(row.status, ""))
    if took is not None and row.status != "pending":
        text.append(f" {duration(took)}")
    return text


class StageTimeline(Static):
    DEFAULT_CSS = "StageTimeline { height: auto; }"
    _shown: tuple | None = None

    def show(self, stages: tuple[api.StageRow, ...], live: bool = True, now: float | None = None) -> None:
        """live: the run's engine runs (else a stage stored as running was interrupted)."""
        now = time.time() if now is None else now
        # What the grid shows depends on these only (a running stage's clock: whole seconds);
        # polled once a second, it is rebuilt (and the screen laid out) only when it changes.
        key = (stages, live, int(now) if live and any(s.status == "running" for s in stages) else None)
        if key == self._shown:
            return
        self._shown = key
        names = sorted({s.stage for s in stages}, key=lambda n: ORDER.get(n, len(ORDER)))
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        table.add_column("iter")
        for name in names:
            table.add_column(name)
        for it in sorted({s.iteration for s in stages}):
            by_name = {s.stage: s for s in stages if s.iteration == it}
            table.add_row(str(it), *[stage_cell(by_name[n], now, live) if n in by_name else Text("") for n in names])
        errors = [Text(f"✗ iter {s.iteration} {s.stage} failed: {clean(s.error or '')}", style="red")
                  for s in stages if s.status == "failed"]
        self.update(Group(table, *errors))
