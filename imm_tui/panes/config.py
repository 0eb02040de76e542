"""The config tab of a run (being built)."""
from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import Static


class ConfigPane(Vertical):
    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id

    def compose(self):
        yield Static("config", markup=False)
